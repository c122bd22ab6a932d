"""Routes outside the admin and the API: the health probe and the links in patient emails."""

urlpatterns: list = []
