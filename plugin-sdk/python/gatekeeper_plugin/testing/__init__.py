"""Testing a plugin without gatekeeper: a test host that runs the plugin object in memory the
way gatekeeper runs a plugin process, and builders for what gatekeeper sends.

* :class:`PluginHost` (``with``) and :class:`AsyncPluginHost` (``async with``): the real
  lifecycle (handshake, ``configure``, ``start`` … ``stop``) and the real JSON round trip over a
  socket pair; one method per hook; results checked as gatekeeper checks them
  (:class:`BadResult`); manager calls recorded (:attr:`AsyncPluginHost.manager_calls`).
* :func:`make_request`, :func:`make_response`, :func:`make_error`: hook arguments with
  gatekeeper's defaults.

Example (a plain ``unittest`` test)::

    from gatekeeper_plugin.testing import PluginHost, make_request

    def test_denies_without_a_token(self):
        with PluginHost(TokenAuth(), type="modifier", config={"tokens_file": path}) as host:
            result = host.modify_request(make_request(path="/api"))
        self.assertEqual(result["response"]["status"], 401)
"""

from .builders import make_error, make_request, make_response
from .host import (
    DEFAULT_TIMEOUT,
    TOKEN,
    AsyncPluginHost,
    BadHandshake,
    BadResult,
    NotDeclared,
    PluginHost,
    TestHostError,
    plugin_env,
    socket_pair_streams,
)

__all__ = [
    "AsyncPluginHost",
    "BadHandshake",
    "BadResult",
    "DEFAULT_TIMEOUT",
    "NotDeclared",
    "PluginHost",
    "TOKEN",
    "TestHostError",
    "make_error",
    "make_request",
    "make_response",
    "plugin_env",
    "socket_pair_streams",
]
