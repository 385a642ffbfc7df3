'use strict';

// The session stack Smart Scheduler runs on today (express-session with
// connect-pg-simple and passport's and connect-flash's session keys), kept
// so the Go library's tests can sign in on the real thing and read what it
// leaves behind: the connect.sid cookie and the session table's rows.

const express = require('express');
const session = require('express-session');
const PgStore = require('connect-pg-simple')(session);
const flash = require('connect-flash');

const FOURTEEN_DAYS_MS = 14 * 24 * 60 * 60 * 1000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
}

const secrets = required('SESSION_SECRET').split(',').filter((s) => s !== '');
if (secrets.length === 0) {
  console.error('SESSION_SECRET lists no secret');
  process.exit(2);
}

const store = new PgStore({
  conString: required('DATABASE_URL'),
  tableName: process.env.SESSION_TABLE || 'session',
  schemaName: process.env.SESSION_SCHEMA || undefined,
  createTableIfMissing: true,
});

const app = express();
app.use(express.urlencoded({ extended: false }));
app.use(session({
  name: process.env.COOKIE_NAME || 'connect.sid',
  secret: secrets,
  store,
  resave: false,
  saveUninitialized: false,
  cookie: { secure: false, httpOnly: true, sameSite: 'lax', path: '/' },
}));
app.use(flash());

// param reads a form field, falling back to the query string, so tests can
// post either way.
function param(req, name) {
  if (req.body && req.body[name] !== undefined) return req.body[name];
  return req.query[name];
}

// POST /login signs user in the way passport does (a new session id, the
// user under passport.user) and leaves a flash message. remember=0 gives a
// browser-session cookie, anything else a 14-day one. numeric=1 stores the
// user as a number, as apps whose serializeUser returns a numeric id do.
app.post('/login', (req, res, next) => {
  const name = param(req, 'user');
  if (!name) return res.status(400).json({ error: 'user is required' });
  const user = param(req, 'numeric') === '1' ? Number(name) : name;
  const remember = param(req, 'remember') !== '0';
  req.session.regenerate((err) => {
    if (err) return next(err);
    req.session.cookie.maxAge = remember ? FOURTEEN_DAYS_MS : null;
    req.session.passport = { user };
    req.session.visits = 1;
    req.flash('info', 'Welcome back, %s', user);
    req.session.save((err) => {
      if (err) return next(err);
      res.json({ sid: req.sessionID, session: req.session });
    });
  });
});

app.get('/visit', (req, res) => {
  req.session.visits = (req.session.visits || 0) + 1;
  res.json({ visits: req.session.visits });
});

app.get('/state', (req, res) => {
  res.json({ sid: req.sessionID, session: req.session });
});

app.post('/logout', (req, res, next) => {
  req.session.destroy((err) => {
    if (err) return next(err);
    res.clearCookie(process.env.COOKIE_NAME || 'connect.sid', { path: '/' });
    res.json({ ok: true });
  });
});

app.use((err, req, res, next) => {
  console.error(err);
  res.status(500).json({ error: String(err && err.message) });
});

// Express 5 calls back with the error when the port cannot be had.
const server = app.listen(Number(process.env.PORT || 0), '127.0.0.1', (err) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
