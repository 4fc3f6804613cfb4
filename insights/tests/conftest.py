from webhooks.tests.conftest import receiver  # noqa: F401 - a fixture shared with webhooks
