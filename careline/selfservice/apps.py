from django.apps import AppConfig


class SelfServiceConfig(AppConfig):
    name = "careline.selfservice"
    verbose_name = "Self-service"

    def ready(self) -> None:
        from careline.messaging import visit_links
        from careline.selfservice import links
        from careline.selfservice.offer_contact import TextAndLink
        from careline.waitlist import offers, patient_contact

        # Reminders carry manage links; messaging, a layer below, issues them through
        # this seam at send time, and stores texts with their tokens redacted.
        visit_links.register(
            visit_links.ManageLinkIssuer(
                new=links.new_manage_link_url,
                save=links.save_links,
                redact=links.redact,
                attach=links.attach_to_message,
                reissue=links.reissue_for_messages,
                email_links=links.new_email_links,
            )
        )
        patient_contact.provide(TextAndLink())
        # Old rate-limit counters are forgotten on the waitlist's rounds, as they always were.
        offers.also_run_when_due(_forget_old_rate_counters)


def _forget_old_rate_counters(now) -> dict[str, int]:
    from careline.selfservice import ratelimit

    return {"rate_counters_deleted": ratelimit.forget_old(now=now)}
