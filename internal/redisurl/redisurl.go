// Package redisurl turns REDIS_URL into go-redis options, for the session
// package and sessionctl alike, and keeps its password out of messages.
//
// The forms accepted:
//
//	redis://[user[:password]@]host[:port][/database][?option=value...]
//	rediss://...                        the same over TLS
//	redis://host1:7000?addr=host2:7000&addr=host3:7000   a cluster
//	redis://host:7000?cluster=true      a cluster, found from one node
//
// Several addr parameters, cluster=true, or the cluster argument of Parse
// (REDIS_CLUSTER=true) select Redis Cluster; other options are go-redis's
// (dial_timeout, pool_size, ...). A password holding @, #, % or / must be
// percent-encoded (%40, %23, %25, %2F).
package redisurl

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Target is a parsed REDIS_URL.
type Target struct {
	// Cluster reports whether the URL selects Redis Cluster.
	Cluster bool
	// Addrs are the servers named, host:port each.
	Addrs []string
	// DB is the database number; always 0 for a cluster.
	DB int
	// Where names the servers and database for messages, without
	// credentials: "redis 10.0.0.5:6379 database 2".
	Where string

	single  *redis.Options
	cluster *redis.ClusterOptions
}

// errSyntax never quotes the URL: a parse error of net/url can quote part
// of a password that was not percent-encoded.
var errSyntax = errors.New("is not a valid Redis URL (value not shown: it may hold a password): use redis://user:password@host:6379/0, percent-encoding @, #, % and / in the password (%40, %23, %25, %2F)")

// Parse parses rawURL; cluster forces Redis Cluster. Its errors never
// contain the password.
func Parse(rawURL string, cluster bool) (Target, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Fragment != "" || u.Opaque != "" {
		return Target{}, errSyntax
	}
	switch u.Scheme {
	case "redis", "rediss":
	default:
		return Target{}, fmt.Errorf("has scheme %q: use redis:// or rediss:// (TLS)", u.Scheme)
	}
	if u.Host == "" {
		return Target{}, errors.New("names no host: use redis://host:6379")
	}
	q := u.Query()
	extra := q["addr"]
	if v := q.Get("cluster"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Target{}, fmt.Errorf("has cluster=%q: set it to true or false", v)
		}
		cluster = cluster || b
	}
	q.Del("cluster")
	cluster = cluster || len(extra) > 0
	t := Target{Cluster: cluster}
	u.RawQuery = q.Encode()
	if cluster {
		if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
			return Target{}, fmt.Errorf("names database %s, but a Redis Cluster has only database 0: remove the path", db)
		}
		u.Path = ""
		opts, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return Target{}, errors.New(Redact(strings.TrimPrefix(err.Error(), "redis: "), rawURL))
		}
		opts.ContextTimeoutEnabled = true
		t.cluster, t.Addrs = opts, opts.Addrs
		t.Where = "redis cluster " + strings.Join(opts.Addrs, ", ")
		return t, nil
	}
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		return Target{}, errors.New(Redact(strings.TrimPrefix(err.Error(), "redis: "), rawURL))
	}
	opts.ContextTimeoutEnabled = true
	t.single, t.Addrs, t.DB = opts, []string{opts.Addr}, opts.DB
	t.Where = fmt.Sprintf("redis %s database %d", opts.Addr, opts.DB)
	return t, nil
}

// NewClient returns a client for the target, which the caller closes.
func (t Target) NewClient() redis.UniversalClient {
	if t.Cluster {
		opts := *t.cluster
		return redis.NewClusterClient(&opts)
	}
	opts := *t.single
	return redis.NewClient(&opts)
}

// WithPoolSize returns the target with n connections per node, for a
// client sized to its load (sessionbench); 0 keeps go-redis's default.
func (t Target) WithPoolSize(n int) Target {
	if t.Cluster {
		opts := *t.cluster
		opts.PoolSize = n
		t.cluster = &opts
	} else {
		opts := *t.single
		opts.PoolSize = n
		t.single = &opts
	}
	return t
}

// Redact removes the password of rawURL from msg, in every form it could
// take there: as written, percent-decoded and percent-encoded.
func Redact(msg, rawURL string) string {
	var secrets []string
	if u, err := url.Parse(rawURL); err == nil {
		if pw, ok := u.User.Password(); ok {
			secrets = append(secrets, pw, url.QueryEscape(pw), url.PathEscape(pw))
		}
	}
	// The password as written between "://user:" and the last "@" of the
	// authority, for URLs net/url cannot parse.
	if _, rest, ok := strings.Cut(rawURL, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
				secrets = append(secrets, pw)
				if dec, err := url.PathUnescape(pw); err == nil {
					secrets = append(secrets, dec)
				}
			}
		}
	}
	secrets = append(secrets, rawURL)
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}

// Describe names the servers and database of rawURL for logs, never its
// credentials, or says that it does not parse.
func Describe(rawURL string, cluster bool) string {
	t, err := Parse(rawURL, cluster)
	if err != nil {
		return "(unparsable REDIS_URL)"
	}
	return t.Where
}
