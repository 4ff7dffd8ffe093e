// Behaviour for staff pages, kept out of the HTML so the Content-Security-Policy can forbid
// inline scripts and handlers.
document.addEventListener("DOMContentLoaded", function () {
  // Day view: "Show" goes to /schedule/<practice>/<day>/ (the provider stays a query).
  document.querySelectorAll("form[data-day-picker]").forEach(function (form) {
    form.addEventListener("submit", function () {
      form.action = "/schedule/" + form.practice.value + "/" + form.day.value + "/";
      form.practice.disabled = true;
      form.day.disabled = true;
    });
  });
  // Inbox: choosing a canned reply puts its text in the reply box.
  document.querySelectorAll("select[data-fills]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.value) {
        document.getElementById(select.dataset.fills).value = select.value;
      }
    });
  });
});
