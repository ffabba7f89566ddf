"""HQ's Python client: no server dependencies (httpx only); `hq_client.django` is the optional extra."""
