"""labsupport: the helper package every lab of the ONNX Interoperability Workbook imports.

One module per concern: ``checking`` (exercises), ``onnx_problems`` (ONNX-specific
exercise kinds), ``exercises`` (each lab's problems), ``progress`` (the checklist),
``display`` (markdown in JupyterLab, plain text elsewhere, labelled status icons, warnings),
``model_loader`` (reads every model file: one actionable line for bad input, the memory budget),
``models`` (reference models and data), ``plots``, ``doctor``, ``notebook_build`` (the
generator) and ``cli``. Importing this package is cheap: heavy frameworks are imported
by the functions that need them.
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
