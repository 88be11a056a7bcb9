// phasebook ops console: resync a review-queue row in place. Without this script the same
// form posts and the browser lands on the appointment's page, so nothing depends on it.
'use strict';

document.addEventListener('submit', async (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || form.dataset.inline !== 'resync') {
    return;
  }
  const row = form.closest('[data-appointment]');
  if (!row) {
    return;
  }
  event.preventDefault();
  const button = form.querySelector('button');
  const outcome = row.querySelector('[data-role="outcome"]');
  if (button) {
    button.disabled = true;
  }
  if (outcome) {
    outcome.textContent = 'Resyncing…';
  }
  try {
    const response = await fetch(form.action, {
      method: 'POST',
      body: new URLSearchParams(new FormData(form)),
      headers: { 'X-Console-Fragment': 'row' },
      credentials: 'same-origin',
    });
    if (!response.ok) {
      throw new Error('the server answered ' + response.status);
    }
    const template = document.createElement('template');
    template.innerHTML = (await response.text()).trim();
    const fresh = template.content.firstElementChild;
    if (!fresh) {
      throw new Error('the answer was empty');
    }
    row.replaceWith(fresh);
    const heading = fresh.querySelector('h2 a');
    if (heading) {
      heading.focus();
    }
  } catch (error) {
    if (outcome) {
      outcome.textContent = 'Resync failed: ' + error.message + '. Reload and try again.';
    }
    if (button) {
      button.disabled = false;
    }
  }
});
