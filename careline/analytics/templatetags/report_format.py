from django import template

register = template.Library()


@register.filter
def percent(value, digits: int = 1) -> str:
    """0.1234 → '12.3%'; None → '—'. Signed values keep their sign."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.{int(digits)}f}%"
