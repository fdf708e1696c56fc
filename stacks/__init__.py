"""One Pulumi program per provider. Each module defines `program(ctx: StackContext) -> None`.

Programs are imported lazily: a missing cloud extra only breaks that cloud.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stacks.common import StackContext

EXTRAS = {"aws": "pulumi_aws", "gcp": "pulumi_gcp", "scaleway": "pulumiverse_scaleway", "local": None}


def load_program(provider: str) -> Callable[[StackContext], None]:
    """The stack program for `provider`; raises NotAvailableError when its cloud extra is missing."""
    from benchctl.errors import NotAvailableError

    sdk = EXTRAS[provider]
    if sdk is not None and importlib.util.find_spec(sdk) is None:
        raise NotAvailableError(
            f"provider {provider!r} needs the {sdk} package: pip install 'benchctl[{provider}]'"
        )
    module = importlib.import_module(f"stacks.{provider}")
    return module.program  # type: ignore[no-any-return]
