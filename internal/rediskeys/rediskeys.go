// Package rediskeys is the layout of the Redis store's keys, shared by the
// store (package session) and sessionctl, which counts sessions without a
// SCAN.
//
// A session under key K lives in one hash, Record(K), in shard Shard(K) of
// Shards. Each shard has one sorted set, Deadlines(shard), in the same hash
// slot as its records (the shard is the key's hash tag), holding
// Member(K, user) scored by the session's deadline in microseconds: the
// scripts keep it in step with the record in the same atomic step, which
// lets Prune and sessionctl stats find expired and live sessions by shard
// instead of by scanning the keyspace. A user's sessions are listed in
// User(userID), in the user's own slot, scored by their absolute expiry.
package rediskeys

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Shards is the number of session shards. It is part of every record's key
// name, so changing it would orphan every stored session.
const Shards = 1024

// DefaultPrefix starts every key when RedisOptions.Prefix is empty.
const DefaultPrefix = "session:"

// Layout names the keys under one prefix.
type Layout struct {
	prefix string
}

// New returns the layout under prefix ("" means DefaultPrefix). A prefix
// may not contain braces: Redis Cluster would take them for a hash tag and
// put every key in one slot.
func New(prefix string) (Layout, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return Layout{}, errors.New("the key prefix contains a brace, which Redis Cluster takes for a hash tag: choose one without { and }")
	}
	return Layout{prefix: prefix}, nil
}

// Prefix returns the prefix every key starts with.
func (l Layout) Prefix() string { return l.prefix }

// Shard returns the shard of the session stored under key: FNV-1a of the
// key, so that any key (not only the Manager's hex digests) spreads evenly.
func Shard(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % Shards)
}

func tag(shard int) string { return fmt.Sprintf("%03x", shard) }

// RecordPrefix is what Record puts before the session key in shard: the
// scripts that walk a shard's deadlines build record keys from it.
func (l Layout) RecordPrefix(shard int) string { return l.prefix + "{" + tag(shard) + "}s:" }

// Record returns the hash holding the session stored under key.
func (l Layout) Record(key string) string { return l.RecordPrefix(Shard(key)) + key }

// Deadlines returns the sorted set of the deadlines of shard's sessions.
func (l Layout) Deadlines(shard int) string { return l.prefix + "{" + tag(shard) + "}deadlines" }

// DeadlinesOf returns the deadline set of the shard key belongs to.
func (l Layout) DeadlinesOf(key string) string { return l.Deadlines(Shard(key)) }

// User returns the sorted set of userID's sessions. The user ID is the hash
// tag, so the set lives in the user's own slot.
func (l Layout) User(userID string) string { return l.prefix + "{u:" + userID + "}" }

// Member is a session's entry in its shard's deadline set: the key's
// length, a colon, the key and the user, so that Prune can tell which user
// index also lists the session after Redis expired the record.
func Member(key, userID string) string { return strconv.Itoa(len(key)) + ":" + key + userID }

// ParseMember splits a deadline set entry into the session key and user.
func ParseMember(member string) (key, userID string, ok bool) {
	n, rest, found := strings.Cut(member, ":")
	length, err := strconv.Atoi(n)
	if !found || err != nil || length < 0 || length > len(rest) {
		return "", "", false
	}
	return rest[:length], rest[length:], true
}

// Stats counts the sessions under a key prefix.
type Stats struct {
	// Live sessions, and expired ones whose entries the next prune
	// removes (Redis has usually deleted their records already).
	Live, Expired int64
	// Now is the server's clock the counts are taken at.
	Now time.Time
}

// Count counts the sessions of l from its deadline sets: two ZCOUNTs a
// shard, pipelined, against the server's clock; no SCAN.
func (l Layout) Count(ctx context.Context, client redis.UniversalClient) (Stats, error) {
	now, err := client.Time(ctx).Result()
	if err != nil {
		return Stats{}, err
	}
	us := strconv.FormatInt(now.UnixMicro(), 10)
	live := make([]*redis.IntCmd, Shards)
	expired := make([]*redis.IntCmd, Shards)
	if _, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range Shards {
			live[i] = p.ZCount(ctx, l.Deadlines(i), "("+us, "+inf")
			expired[i] = p.ZCount(ctx, l.Deadlines(i), "-inf", us)
		}
		return nil
	}); err != nil {
		return Stats{}, err
	}
	st := Stats{Now: now}
	for i := range live {
		st.Live += live[i].Val()
		st.Expired += expired[i].Val()
	}
	return st, nil
}
