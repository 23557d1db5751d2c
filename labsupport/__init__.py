"""labsupport: the helper package every lab of the ONNX Interoperability Workbook imports.

One module per concern: ``checking`` (exercises), ``onnx_problems`` (ONNX-specific
exercise kinds), ``exercises`` (each lab's problems), ``progress`` (the checklist),
``display`` (markdown in JupyterLab, plain text elsewhere, labelled status icons, warnings),
``model_loader`` (reads every model file: one actionable line for bad input, the memory budget),
``onnx_tools`` (CPU sessions, dims, opsets, element types), ``validate`` (the parity harness),
``models`` (reference models and data), ``plots``, ``doctor``, ``runtime`` (lab 08),
``optimize`` (lab 09), ``quantize`` (lab 10), ``bench`` and ``profiling`` (lab 11),
``interop`` (lab 12), ``native`` and ``node`` (lab 13), ``serving`` (lab 14),
``capstone``, ``convert``, ``gate`` and ``web`` (lab 15),
``notebook_build`` (the generator), ``workspace`` and ``cli``. Importing this package is
cheap: heavy frameworks are imported by the functions that need them.
"""

from pathlib import Path

from labsupport.checking import ____

__all__ = ["____", "artifacts_dir"]
__version__ = "0.1.0"


def artifacts_dir(lab: str) -> Path:
    """The folder a lab writes its models into (``artifacts/<lab>`` beside the notebook)."""
    folder = Path("artifacts") / lab
    folder.mkdir(parents=True, exist_ok=True)
    return folder
