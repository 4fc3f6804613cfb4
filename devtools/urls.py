from django.urls import path

from devtools.demo_tools import demo_booking

urlpatterns = [path("demo/book", demo_booking, name="demo-booking")]
