# Creates the portal's users: python3 -m portal.seed (with DJANGO_SETTINGS_MODULE set).
import django

django.setup()
from django.contrib.auth.models import User  # noqa: E402

# bob is an existing user Portcullis has only an invitation for (he never signed in through it).
for name, email in [("alice", "alice@fresh.example"), ("victim", "victim@stale.example"), ("bob", "bob@fresh.example")]:
    User.objects.create_user(name, email, "old-password-" + name)
