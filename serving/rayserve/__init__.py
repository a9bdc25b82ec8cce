"""Scale-out: the same bundle, engine and protocols on a Ray cluster behind Ray Serve's proxies.

Needs the ``ray`` extra (``pip install 'vslim[ray]'``); nothing outside this
package imports Ray, so one-process serving and the demo work without it.

* ``config``: replicas, their size and the proxies' ports (one dataclass), and
  the Serve config file it makes (KubeRay ``serveConfigV2``);
* ``replica``: the Serve deployment, one vslim model service per replica;
* ``ingress``: gRPC through Ray's proxy onto vslim's own handlers;
* ``launcher``: ``vslim-serve --ray``: deploy, wait, remove; ``--status``.
"""

from __future__ import annotations

from vslim.serving.errors import ServingError


def require_ray() -> None:
    """A clear error when the extra is missing (instead of an ImportError deep inside)."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError as exc:
        raise ServingError(
            f"--ray needs Ray Serve, which is not installed ({exc}); install it with: pip install 'vslim[ray]'"
        ) from exc
