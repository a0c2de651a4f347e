"""Student servers: nbgrader's assignment list and Validate, never the formgrader."""

c = get_config()  # noqa: F821
c.ServerApp.jpserver_extensions = {
    "nbgrader.server_extensions.assignment_list": True,
    "nbgrader.server_extensions.validate_assignment": True,
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.course_list": False,
    "hub.exchange.lab_api": True,  # the grading panel of labextension/
}
