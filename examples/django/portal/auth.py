from django.contrib.auth.middleware import RemoteUserMiddleware


class PortcullisUserMiddleware(RemoteUserMiddleware):
    """Logs the person in from the address Portcullis verified (X-Portcullis-Email)."""

    header = "HTTP_X_PORTCULLIS_EMAIL"
