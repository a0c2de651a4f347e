"""A course's formgrader service: the formgrader and nothing else (see safe_formgrader.py).

Every server extension installed in this environment is switched off by name, so that one
installed later is not switched on by its own ``jupyter_server_config.d`` file; terminals are off.
"""

from jupyter_core.paths import jupyter_config_path
from jupyter_server.extension.config import ExtensionConfigManager

c = get_config()  # noqa: F821
installed = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions()
c.ServerApp.jpserver_extensions = {**dict.fromkeys(installed, False), "hub.config.formgrader.safe_formgrader": True}
c.ServerApp.terminals_enabled = False
