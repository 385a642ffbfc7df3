package session_test

import (
	"testing"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) session.Store { return session.NewMemoryStore() })
}
