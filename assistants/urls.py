from django.urls import path

from assistants import views

urlpatterns = [
    path("assistants/<uuid:assistant_id>/talk/", views.talk, name="assistant-talk"),
]
