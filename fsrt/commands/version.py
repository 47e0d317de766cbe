"""``fsrt version``: the fsrt version and the versions of the libraries it drives."""

from __future__ import annotations

import click

from fsrt.commands.common import json_option, print_json


def library_versions() -> dict[str, str | None]:
    """Installed versions of fsrt's key libraries (None when absent), without importing them."""
    from importlib import metadata

    out = {}
    for dist in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "triton", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


@click.command("version")
@json_option
def command(as_json: bool) -> None:
    """Print the fsrt version and the versions of torch, ONNX, runtimes and numpy."""
    from fsrt import __version__

    libs = library_versions()
    if as_json:
        print_json({"fsrt": __version__, **libs})
        return
    click.echo(f"fsrt {__version__}")
    for k, v in libs.items():
        click.echo(f"  {k:16s} {v or 'not installed'}")
