"""The formgrader's own "autograde" would run student code in nbgrader's kernel, unsandboxed, inside
the formgrader service (DESIGN decision 1): it is replaced by a step that refuses and says what to do."""

c = get_config()  # noqa: F821
c.Autograde.autograde_preprocessors = ["hub.exchange.plugin.RefuseInKernelGrading"]
