from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Careline administration"
admin.site.site_title = "Careline"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("careline.web.urls")),
]
