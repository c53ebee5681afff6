# Image-wide Jupyter server settings (the command line in entrypoint.sh sets ip, port, token).
c = get_config()  # noqa: F821  (provided by Jupyter when it loads this file)
c.ServerApp.root_dir = "/workspace"
c.ServerApp.port_retries = 0  # fail loudly if the port is taken instead of moving silently
c.LabApp.extension_manager = "readonly"  # no PyPI lookups from a server that may be offline
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash", "-l"]}
