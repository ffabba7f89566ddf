"""Schemathesis in-process: the hypothesis `ci` and `fuzz` profiles and the `fuzz` marker.

`make test` runs a few examples per operation (HQ_FUZZ_EXAMPLES, default 5) with the derandomized
`ci` profile: the same examples every run. `make fuzz` runs `pytest tests/fuzz -p no:randomly` with
HQ_FUZZ_EXAMPLES=200 and HQ_FUZZ_PROFILE=fuzz: new random examples each run (a failure prints the
blob that reproduces it).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

SUPPRESSED = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True, suppress_health_check=SUPPRESSED)
settings.register_profile("fuzz", deadline=None, derandomize=False, print_blob=True, suppress_health_check=SUPPRESSED)


def pytest_configure(config) -> None:  # noqa: ANN001
    config.addinivalue_line("markers", "fuzz: schemathesis against the OpenAPI schema (longer with make fuzz)")
