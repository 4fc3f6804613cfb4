from django.contrib.auth import views as auth_views
from django.urls import path

from analytics import views

app_name = "analytics"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("figures/", views.figures, name="figures"),
    path("calls/<uuid:call_id>/", views.call_detail, name="call"),
    path("campaigns/", views.campaigns, name="campaigns"),
    path("campaigns/progress/", views.campaigns_progress, name="campaigns-progress"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="analytics/login.html", next_page="analytics:dashboard"
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="analytics:login"), name="logout"),
]
