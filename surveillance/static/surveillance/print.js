// "Print" links: the content security policy allows no inline script, so the handler lives here.
document.addEventListener("click", (event) => {
  const link = event.target.closest("[data-print]");
  if (link) {
    event.preventDefault();
    window.print();
  }
});
