from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """Stand-ins at the wire (a Groq-compatible server), the call simulator and test fixtures.

    Installed when DEBUG or DEVTOOLS is set; a production install needs neither it nor its
    requirements (requirements-devtools.txt).
    """

    name = "devtools"
    verbose_name = "Development tools"
