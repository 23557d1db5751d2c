"""pytest plugin for the notebook runs (``-p tests.nbval_stderr``, see the Makefile).

A cell that writes to stderr fails its nbval item unless it carries the cell tag
``expects-stderr``. Warnings and library noise are part of what a learner sees: each one
is either silenced at its source (with a reason in the prose) or tagged and explained in
the prose beside the cell. Without this plugin a new warning would creep into a lab
unnoticed, because nbval's lax mode compares no outputs.

The kernel nbval starts must see what a learner's kernel sees. ipykernel forwards what
native libraries (TensorFlow's C++ logging, oneDNN) write straight to file descriptor 2,
except when ``PYTEST_CURRENT_TEST`` is in its environment; pytest sets that variable while a
test sets up, which is when nbval starts the kernel. The plugin starts the kernel
without it, so such lines reach the cell's outputs as they reach JupyterLab.

Native code's stderr can reach the kernel's output thread after its cell has finished; it
would then be published under the *next* cell and blamed on it. After each code cell the
plugin therefore runs a tiny silent request in the same kernel and counts whatever stderr is
published under it as the finished cell's.

In the solutions run (``LABSUPPORT_EXPECT_SOLVED=1``) a tagged cell that writes nothing
to stderr fails too, so the tag and the prose explaining it cannot go stale. Student
notebooks are exempt from that half: a cell left with a placeholder may well stay quiet.
"""

from __future__ import annotations

import os

import pytest

STDERR_TAG = "expects-stderr"
_SHOWN_CHARACTERS = 600
_DRAIN_CODE = "__import__('time').sleep(0.02)"
_DRAIN_SECONDS = 30


def _is_solutions_run() -> bool:
    return os.environ.get("LABSUPPORT_EXPECT_SOLVED", "").strip().lower() in {"1", "true", "yes", "on"}


def stderr_text(outputs) -> str:
    """Everything a cell's outputs wrote to stderr, in order."""
    return "".join(output.get("text", "") for output in outputs or ()
                   if output.get("output_type") == "stream" and output.get("name") == "stderr")


def stderr_problem(tags, stderr: str, *, solutions_run: bool) -> str | None:
    """Why a cell's stderr breaks the rule, or None when it keeps it."""
    tagged = STDERR_TAG in (tags or ())
    if stderr and not tagged:
        shown = stderr if len(stderr) <= _SHOWN_CHARACTERS else stderr[:_SHOWN_CHARACTERS] + " …"
        return (f"the cell wrote to stderr but is not tagged '{STDERR_TAG}':\n{shown}\n"
                f"Silence the message at its source (and say why in the prose), or tag the cell "
                f"'{STDERR_TAG}' and explain in the prose what it prints.")
    if tagged and not stderr and solutions_run:
        return (f"the cell is tagged '{STDERR_TAG}' but wrote nothing to stderr: remove the tag and the prose "
                "that explains the message.")
    return None


class UnexpectedStderr(AssertionError):
    """A notebook cell broke the stderr rule."""


def _start_kernel_as_jupyterlab_would(start_new_kernel):
    def start(*args, **kwargs):
        kwargs.setdefault("env", {key: value for key, value in os.environ.items() if key != "PYTEST_CURRENT_TEST"})
        return start_new_kernel(*args, **kwargs)

    return start


def pytest_configure(config) -> None:
    import nbval.kernel

    nbval.kernel.start_new_kernel = _start_kernel_as_jupyterlab_would(nbval.kernel.start_new_kernel)


def late_stderr(item) -> str:
    """Stderr the kernel publishes while it runs a silent request right after ``item``'s cell."""
    kernel = item.parent.kernel
    msg_id = kernel.execute_cell_input(_DRAIN_CODE, allow_stdin=False)
    kernel.await_reply(msg_id, timeout=_DRAIN_SECONDS)
    texts = []
    while True:
        message = item.parent.get_kernel_message(timeout=_DRAIN_SECONDS)
        # ipykernel's thread that reads file descriptor 2 tags what it reads with whichever request
        # was current, so late output may carry the finished cell's id or this request's: both are
        # the finished cell's, since nothing else runs in between.
        if message["msg_type"] == "stream" and message["content"].get("name") == "stderr":
            texts.append(message["content"]["text"])
        elif (message["msg_type"] == "status" and message["content"]["execution_state"] == "idle"
              and message["parent_header"].get("msg_id") == msg_id):
            return "".join(texts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    cell = getattr(item, "cell", None)
    if cell is not None and cell.get("cell_type") == "code":
        stderr = stderr_text(item.test_outputs) + late_stderr(item)
        problem = stderr_problem(cell.get("metadata", {}).get("tags", []), stderr, solutions_run=_is_solutions_run())
        if problem:
            raise UnexpectedStderr(f"{item.nodeid}: {problem}")
    return result
