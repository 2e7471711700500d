"""Tasks retry I/O errors only: bad input fails at once."""

from __future__ import annotations

from prefect.states import Completed, Failed

from cflib.errors import DataFormatError, DatasetError
from tasks._retry import retry_on_io


def test_retry_on_io_errors_only() -> None:
    assert retry_on_io(None, None, Failed(data=OSError(28, "No space left on device")))
    assert retry_on_io(None, None, Failed(data=TimeoutError("slow disk")))
    assert not retry_on_io(None, None, Failed(data=DataFormatError("f.txt", 3, "bad date")))
    assert not retry_on_io(None, None, Failed(data=DatasetError("missing manifest")))
    assert not retry_on_io(None, None, Completed(data=1))
