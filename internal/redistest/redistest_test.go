package redistest

import (
	"context"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// TestSharedCluster starts the shared cluster and writes to every node
// through a cluster client.
func TestSharedCluster(t *testing.T) {
	c := SharedCluster(t)
	client := Client(t, c.URL())
	prefix := Prefix(t, client)
	ctx := context.Background()
	seen := map[int]bool{}
	for i := 0; len(seen) < len(c.Nodes) && i < 1000; i++ {
		key := prefix + "{" + randomHex(4) + "}"
		if err := client.Set(ctx, key, "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		seen[c.NodeOf(t, key)] = true
	}
	if len(seen) != len(c.Nodes) {
		t.Errorf("keys landed on %d nodes of %d", len(seen), len(c.Nodes))
	}
}
