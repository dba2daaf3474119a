# A stock Django project behind Portcullis (examples/django, TestE2EDjango): the password reset views of
# django.contrib.auth, unchanged; mail goes to files in PORTAL_MAIL_DIR, so the test sees who
# was sent a reset link.
import os

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "portcullis-test-only"
DEBUG = False
# The public host only (PORTAL_HOSTS: the test's loopback one).
ALLOWED_HOSTS = os.environ.get("PORTAL_HOSTS", "portal.example.com").split(",")
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The person from Portcullis's header, as the README says (portal/auth.py).
    "portal.auth.PortcullisUserMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.RemoteUserBackend",
    "django.contrib.auth.backends.ModelBackend",
]
ROOT_URLCONF = "portal.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["PORTAL_DB"]}}
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [os.path.join(BASE_DIR, "templates")],
    "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
}]
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = os.environ["PORTAL_MAIL_DIR"]
DEFAULT_FROM_EMAIL = "portal@fresh.example"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# Behind Portcullis: the public host arrives as Host (preserve_host), HTTPS as X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
