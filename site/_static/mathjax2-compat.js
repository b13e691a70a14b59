// The ipywidgets HTML manager (widgets/embed.js) typesets widget labels through MathJax 2's API,
// MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]), whenever window.MathJax exists; this site
// serves MathJax 3, which has no Hub. Give it one that forwards to MathJax 3, before the widgets
// render (both run on window "load"; this listener is registered first).
window.addEventListener("load", function () {
  if (!window.MathJax || window.MathJax.Hub) return;
  window.MathJax.Hub = {
    Queue: function () {
      for (var i = 0; i < arguments.length; i++) {
        var job = arguments[i];
        if (Array.isArray(job) && job[0] === "Typeset" && window.MathJax.typesetPromise) {
          window.MathJax.typesetPromise(job[2] ? [job[2]] : undefined).catch(function (e) { console.warn(e); });
        }
      }
    },
  };
});
