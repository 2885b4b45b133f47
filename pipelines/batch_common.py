"""What `batch.chat` and `batch.images` share: validate, run, write parts, finalize.

Results are written as part objects in the object store *before* their
items are recorded, so a recorded item always has its line somewhere; a
runner killed in between reruns the item and finalize keeps the first line
per custom_id. Finalize streams the parts into one output and one error
file, so each custom_id appears exactly once, resumed or not. The batch row
itself is the door's (`ctx.batch`); lines are shaped by `farm.openai.batch_lines`.
"""

from __future__ import annotations

import json
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from farm.batches.requests import LineError, Validator, split_lines
from farm.openai.batch_lines import error_line
from farm.runner.batch import BatchInfo
from farm.runner.context import Cancelled, JobContext
from kinds.batch_common import BatchSpec

if TYPE_CHECKING:
    from ray.data import Dataset

PART_LINES = 256
MAX_STORED_ERRORS = 1000


class BatchInvalid(Exception):
    """The whole batch cannot run (too big, too many lines, its engine is not there): it fails in validation.

    ``code`` and ``param`` are what the batch's ``errors`` say: the input file
    by default, or (say) the model whose engine is not there.
    """

    def __init__(self, message: str, *, code: str = "invalid_file", param: str = "input_file_id") -> None:
        super().__init__(message)
        self.code, self.param = code, param


@dataclass
class BatchRun:
    ctx: JobContext
    info: BatchInfo

    @classmethod
    def load(cls, ctx: JobContext) -> BatchRun:
        return cls(ctx, ctx.batch.info())

    @property
    def spec(self) -> BatchSpec:
        assert isinstance(self.ctx.spec, BatchSpec)
        return self.ctx.spec

    # -- validation ---------------------------------------------------------------------------

    def validate(self, models: set[str], out: Path) -> int:
        """Check every line; write runnable, not-yet-done requests to ``out``; return their count."""
        if self.info.input_key is None:
            raise BatchInvalid("the input file no longer exists")
        if self.info.input_size > self.spec.max_bytes:
            raise BatchInvalid(f"the input file is {self.info.input_size} bytes; the limit is {self.spec.max_bytes}")
        done = self.ctx.done_items()
        validator = Validator(self.info.endpoint, models, self.spec.max_lines)
        errors: list[LineError] = []
        runnable = 0
        with out.open("w") as fh:
            for line, raw in split_lines(self.ctx.objects.get(self.info.input_key)):
                checked = validator.check(line, raw)
                if isinstance(checked, LineError):
                    if checked.code == "too_many_requests":
                        raise BatchInvalid(checked.message)
                    errors.append(checked)
                elif line not in done:
                    fh.write(json.dumps({"line": checked.line, "custom_id": checked.custom_id, "body": json.dumps(checked.body)}) + "\n")
                    runnable += 1
        self.ctx.set_total(validator.count)
        self.ctx.batch.set_errors([e.public() for e in errors[:MAX_STORED_ERRORS]])
        self.write_part([error_line(e.custom_id, e.code, e.message, 400, param=e.param)
                         for e in errors if e.custom_id and e.line not in done], kind="error")
        for e in errors:
            if e.line not in done:
                self.ctx.item(e.line, False, e.message)
        self.ctx.flush()
        return runnable

    # -- parts ------------------------------------------------------------------------------------

    def write_part(self, lines: list[str], kind: str) -> None:
        if lines:
            self.ctx.batch.put_part(kind, ("\n".join(lines) + "\n").encode(), len(lines))

    def consume(self, rows: Iterator[dict[str, Any]], to_line: Callable[[dict[str, Any]], tuple[bool, str]]) -> None:
        """Write result rows as parts, then record their items; stop between parts on cancel."""
        ok_lines: list[str] = []
        err_lines: list[str] = []
        outcomes: list[tuple[int, bool, str | None]] = []
        last = time.monotonic()

        def flush() -> None:
            nonlocal ok_lines, err_lines, outcomes, last
            self.write_part(ok_lines, "output")
            self.write_part(err_lines, "error")
            for idx, ok, err in outcomes:
                self.ctx.item(idx, ok, err)
            self.ctx.flush()
            ok_lines, err_lines, outcomes, last = [], [], [], time.monotonic()

        for row in rows:
            ok, line = to_line(row)
            (ok_lines if ok else err_lines).append(line)
            outcomes.append((int(row["line"]), ok, None if ok else str(row.get("error"))[:500]))
            if len(outcomes) >= PART_LINES or time.monotonic() - last > 1.0:
                flush()
                self.ctx.check_cancel()
        flush()

    # -- finalize ---------------------------------------------------------------------------------

    def finalize(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish writing the files even while being stopped
        if not self.ctx.batch.begin_finalizing():
            return  # past its completion window: the control plane writes the files (farm.batches.expiry)
        seen: set[str] = set()
        file_ids: dict[str, str | None] = {}
        for kind in ("output", "error"):
            with tempfile.TemporaryFile() as tmp:
                n = 0
                for key in self.ctx.batch.parts(kind):
                    for _, raw in split_lines(self.ctx.objects.get(key)):
                        cid = json.loads(raw)["custom_id"]
                        if cid in seen:
                            continue
                        seen.add(cid)
                        tmp.write(raw + b"\n")
                        n += 1
                file_ids[kind] = self._save_file(tmp, kind, n) if n or kind == "output" else None
        self.ctx.batch.set_phase("finalizing", output_file_id=file_ids["output"], error_file_id=file_ids["error"])

    def _save_file(self, tmp: BinaryIO, kind: str, lines: int) -> str:
        tmp.seek(0)
        data: BinaryIO | bytes = tmp if lines else b"\n"  # an empty output file still exists (assets cannot be empty)
        return self.ctx.batch.attach_result_file(kind, f"{self.info.id}_{kind}.jsonl", data)


def run_batch(ctx: JobContext, models: set[str], execute: Callable[[BatchRun, Path], None],
              check: Callable[[Path], None] | None = None) -> None:
    """The shape of every batch kind: validate, execute (kind-specific), finalize — also on cancel.

    ``check`` (kind-specific) sees the runnable requests before any of them
    runs and raises :class:`BatchInvalid` when the batch cannot run at all.
    """
    run = BatchRun.load(ctx)
    with tempfile.TemporaryDirectory(prefix=f"{run.info.id}-") as workdir:
        requests = Path(workdir) / "requests.jsonl"
        try:
            runnable = run.validate(models, requests)
            if runnable and check is not None:
                check(requests)
        except BatchInvalid as exc:
            ctx.batch.fail(str(exc), code=exc.code, param=exc.param)
            return
        ctx.batch.set_phase("in_progress")
        try:
            if runnable:
                ctx.check_cancel()  # stopped while validating (cancelled, or past its window): start no engine
                execute(run, requests)
        except Cancelled:
            run.finalize()
            raise
        run.finalize()


def models_of(requests: Path) -> list[str]:
    """The models the runnable requests name, sorted."""
    with requests.open() as lines:
        return sorted({json.loads(json.loads(line)["body"])["model"] for line in lines})


def by_model(requests: Path) -> Iterator[tuple[str, Dataset]]:
    """The runnable requests as a Ray dataset per model they name, one model after another.

    One model per batch is the common case: then every row is its own, with
    no second parse of each body to filter. Connect to Ray first.
    """
    import ray.data

    # The file is on the driver's node, so Ray reads it there; the read holds no CPU, because on a
    # cluster that node (the head) may have none to give: the work goes to the worker nodes.
    ds = ray.data.read_json(f"local://{requests}", lines=True, num_cpus=0)
    used = models_of(requests)
    for name in used:
        yield name, ds if len(used) == 1 else ds.filter(lambda r, n=name: json.loads(r["body"])["model"] == n)
