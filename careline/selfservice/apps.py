from django.apps import AppConfig


class SelfServiceConfig(AppConfig):
    name = "careline.selfservice"
    verbose_name = "Self-service and waitlist"

    def ready(self) -> None:
        # Reminders carry manage links; messaging, a layer below, issues them through
        # this seam at send time.
        from careline.messaging import visit_links
        from careline.selfservice import links

        visit_links.register(
            visit_links.ManageLinkIssuer(new=links.new_manage_link_url, save=links.save_links)
        )
