"""Date formats of every page (FORMAT_MODULE_PATH): the instant to the second, with its zone (UTC,
the project's TIME_ZONE), e.g. "2026-12-05 14:30:05 UTC"; the same as `hq.timefmt.exact`."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
