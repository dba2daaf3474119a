from django.contrib.auth import views
from django.http import HttpResponse
from django.urls import path


def whoami(request):
    """Who Django takes the request to be from (RemoteUserMiddleware), for the test."""
    return HttpResponse(request.user.username if request.user.is_authenticated else "anonymous", content_type="text/plain")


# Django's own password reset views, unchanged.
urlpatterns = [
    path("accounts/password_reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("accounts/password_reset/done/", views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("accounts/reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("accounts/reset/done/", views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("accounts/whoami/", whoami),
    path("public/whoami/", whoami),
]
