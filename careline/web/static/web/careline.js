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
  // Charts: "Download PNG" draws the chart's SVG on a canvas and saves it.
  document.querySelectorAll("button[data-png-of]").forEach(function (button) {
    button.addEventListener("click", function () {
      var svg = document.getElementById(button.dataset.pngOf);
      var width = svg.width.baseVal.value, height = svg.height.baseVal.value;
      var source = new XMLSerializer().serializeToString(svg);
      var image = new Image();
      image.onload = function () {
        var canvas = document.createElement("canvas");
        canvas.width = width * 2;
        canvas.height = height * 2;
        var context = canvas.getContext("2d");
        context.scale(2, 2);
        context.drawImage(image, 0, 0);
        canvas.toBlob(function (blob) {
          var link = document.createElement("a");
          link.href = URL.createObjectURL(blob);
          link.download = button.dataset.pngName;
          document.body.appendChild(link);
          link.click();
          link.remove();
        }, "image/png");
      };
      image.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(source);
    });
  });
});
