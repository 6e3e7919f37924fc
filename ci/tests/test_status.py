from vmrun import status
from vmrun.status import Outcome, exit_status


def test_cmd_status_passes_through() -> None:
    assert exit_status(Outcome(False, 0, 0)) == 0
    assert exit_status(Outcome(False, 3, 0)) == 3
    assert exit_status(Outcome(False, 255, 0)) == 255


def test_precedence() -> None:
    assert exit_status(Outcome(True, 0, 5)) == status.TIMEOUT
    assert exit_status(Outcome(False, 0, 1)) == status.SPLAT
    assert exit_status(Outcome(False, 1, 1)) == status.SPLAT
    assert exit_status(Outcome(False, None, 0)) == status.INFRA
    assert exit_status(Outcome(False, None, 2)) == status.SPLAT


def test_codes_are_distinct() -> None:
    assert len({status.TIMEOUT, status.SPLAT, status.INFRA}) == 3


def test_parse_status_file() -> None:
    assert status.parse_status_file("3\n") == 3
    assert status.parse_status_file("") is None
    assert status.parse_status_file("garbage") is None
    assert status.parse_status_file("300") is None
