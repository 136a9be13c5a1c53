"""A library never configures logging: used without configuration it writes warnings and
errors only (secrets blanked) and leaves the process's structlog setup alone."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import structlog

from tests.conftest import FAST_RETRY, FakeVendor
from unenroll import Item, JobSettings, Outcome, Secret, run
from unenroll.observe.logs import get_logger
from unenroll.observe.secrets import MASK


@pytest.fixture(autouse=True)
def unconfigured() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def test_unconfigured_library_logs_warnings_only_and_configures_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    token = Secret("quiet-default-token-8Hq2")
    log = get_logger(job="j")
    log.debug("chunk.answered", verdict="answered")
    log.info("job.started")
    log.warning("endpoint.throttled", detail=f"token {token.reveal()}")
    out, err = capsys.readouterr()
    assert out == ""
    assert "chunk.answered" not in err and "job.started" not in err
    assert "endpoint.throttled" in err and "job=j" in err
    assert token.reveal() not in err and MASK in err
    assert not structlog.is_configured()


async def test_a_job_run_without_logging_configured_writes_nothing(
    fake_vendor: Callable[..., FakeVendor], capsys: pytest.CaptureFixture[str]
) -> None:
    items = [Item("unenroll", ("c",), str(1000 + i)) for i in range(20)]
    report = await run(fake_vendor(), items, settings=JobSettings(retry=FAST_RETRY, seed=1))
    assert report.counts == {Outcome.UNENROLLED.value: 20}
    assert capsys.readouterr() == ("", "")
    assert not structlog.is_configured()
