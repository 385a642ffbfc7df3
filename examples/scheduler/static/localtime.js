// Shows each <time data-local> in the viewer's time zone, which only the
// browser knows, naming the zone. Without JavaScript the server's text
// stays: the same moment in UTC, saying so.
"use strict";
{
  const format = new Intl.DateTimeFormat(undefined, {
    weekday: "short", day: "numeric", month: "short", year: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  });
  for (const time of document.querySelectorAll("time[data-local]")) {
    const when = new Date(time.dateTime);
    if (!Number.isNaN(when.getTime())) {
      time.textContent = format.format(when);
      time.title = format.resolvedOptions().timeZone;
    }
  }
}
