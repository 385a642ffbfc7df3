package session

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Event is something that happened to a session, told to the hook given
// with WithEvents once the store has committed it.
type Event struct {
	// Kind is what happened:
	//   - "created": a new session was stored;
	//   - "renewed": its token changed (Renew, or a sign-in);
	//   - "signed-in": it was given a user (SetUser);
	//   - "destroyed": Session.Destroy ended it;
	//   - "revoked": RevokeUser, RevokeSession or Session.RevokeOthers ended it;
	//   - "evicted": its user went over Config.MaxPerUser and it was the
	//     least recently seen;
	//   - "expired": pruning removed it after it expired.
	Kind string
	// Session describes the session as the store held it. For "expired"
	// sessions of a store that expires them by itself (Redis) it may hold
	// no more than Key and UserID. Current is never set.
	Session Info
	// Time is when the Manager learned of it, by its clock.
	Time time.Time
}

// WithEvents has hook told of every Event, for audit logs, "new sign-in from
// a browser you have not used" notices, or metrics. hook runs on a
// goroutine of the Manager's, one event at a time in the order they
// happened, never while a lock is held and never delaying a response: when
// it falls 4096 events behind, newer events are dropped and a warning is
// logged. Close waits until the events already queued are told.
func WithEvents(hook func(Event)) Option {
	return func(m *Manager) {
		m.events = &eventQueue{hook: hook, queue: make(chan Event, eventQueueSize), done: make(chan struct{})}
	}
}

// eventQueueSize is how far a slow hook may fall behind before events are
// dropped.
const eventQueueSize = 4096

// eventQueue carries events from requests to the hook.
type eventQueue struct {
	hook    func(Event)
	logger  *slog.Logger
	queue   chan Event
	done    chan struct{}
	stopped sync.WaitGroup
	dropped atomic.Int64
}

func (q *eventQueue) start() {
	q.stopped.Go(func() {
		for {
			select {
			case e := <-q.queue:
				q.hook(e)
			case <-q.done:
				for {
					select {
					case e := <-q.queue:
						q.hook(e)
					default:
						return
					}
				}
			}
		}
	})
}

// stop tells the events already queued and ends the goroutine.
func (q *eventQueue) stop() {
	close(q.done)
	q.stopped.Wait()
}

// emit queues one event for each session in infos, without waiting.
// Called on a nil queue (no hook), it does nothing.
func (q *eventQueue) emit(kind string, now time.Time, infos ...Info) {
	if q == nil {
		return
	}
	for _, info := range infos {
		select {
		case q.queue <- Event{Kind: kind, Session: info, Time: now}:
		default:
			// Logged at the 1st, 2nd, 4th, 8th... drop: loud enough to be
			// seen, never a log line per request.
			if n := q.dropped.Add(1); n&(n-1) == 0 {
				q.logger.Warn("session: the events hook (WithEvents) is too slow: events were dropped", "dropped", n)
			}
		}
	}
}
