package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// AMQPURL returns the URL of the test RabbitMQ that scripts/testservers.sh starts (with a
// trailing slash: the default vhost), or skips (fails, when servers are required) without it.
func AMQPURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("PALLETO_TEST_AMQP_URL")
	if u == "" {
		if os.Getenv("PALLETO_REQUIRE_SERVERS") == "1" {
			t.Fatal("RabbitMQ required but PALLETO_TEST_AMQP_URL is not set: run `make test`")
		}
		t.Skip("no RabbitMQ: run `make test` (or scripts/testservers.sh start and source .testservers/env)")
	}
	return u
}

// MinIOAMQP is how MinIO's AMQP target publishes: its ARN for a bucket notification, and the
// exchange and routing key a queue is bound with to receive the events.
type MinIOAMQP struct{ ARN, Exchange, RoutingKey string }

// MinIOAMQPTarget returns MinIO's AMQP target, as scripts/testservers.sh configured it.
func MinIOAMQPTarget(t testing.TB) MinIOAMQP {
	t.Helper()
	AMQPURL(t)
	return MinIOAMQP{ARN: os.Getenv("PALLETO_TEST_MINIO_AMQP_ARN"), Exchange: os.Getenv("PALLETO_TEST_MINIO_AMQP_EXCHANGE"),
		RoutingKey: os.Getenv("PALLETO_TEST_MINIO_AMQP_ROUTING_KEY")}
}

// AMQPChannel opens a channel to url for a test's own declarations and publishing; it is closed
// at the end of the test.
func AMQPChannel(t testing.TB, url string) *amqp091.Channel {
	t.Helper()
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatalf("amqp dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("amqp channel: %v", err)
	}
	return ch
}

// RabbitMQ is a RabbitMQ node of one test's own, which the test may stop and start (an outage
// of the broker) without disturbing the shared one.
type RabbitMQ struct {
	URL  string
	env  []string
	node string
	cmd  *exec.Cmd
}

// StartRabbitMQ starts a fresh RabbitMQ node from Debian's package on free ports, as the
// `rabbitmq` user when the test runs as root; it is stopped at the end of the test.
func StartRabbitMQ(t testing.TB) *RabbitMQ {
	t.Helper()
	AMQPURL(t) // skip or fail as the shared server does
	if _, err := os.Stat("/usr/lib/rabbitmq/bin/rabbitmq-server"); err != nil {
		t.Fatal("no RabbitMQ server installed (Debian package rabbitmq-server): run `make test`")
	}
	dir, err := os.MkdirTemp("", "palleto-rabbittest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "enabled_plugins"), nil, 0o644)
	if os.Getuid() == 0 {
		exec.Command("chown", "-R", "rabbitmq:", dir).Run()
	}
	ports := freePorts(t, 3)
	home := os.Getenv("HOME")
	if os.Getuid() == 0 {
		home = "/var/lib/rabbitmq"
	}
	r := &RabbitMQ{node: fmt.Sprintf("palleto%d@localhost", ports[0]),
		URL: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", ports[0])}
	r.env = []string{"HOME=" + home, "RABBITMQ_NODENAME=" + r.node, "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", ports[0]), fmt.Sprintf("RABBITMQ_DIST_PORT=%d", ports[1]),
		fmt.Sprintf("ERL_EPMD_PORT=%d", ports[2]), "RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"), "RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq"), "RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(dir, "advanced.config")}
	r.cmd = r.command("/usr/lib/rabbitmq/bin/rabbitmq-server")
	r.cmd.Dir = dir
	log, _ := os.Create(filepath.Join(dir, "server.log"))
	r.cmd.Stdout, r.cmd.Stderr = log, log
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("rabbitmq-server: %v", err)
	}
	t.Cleanup(func() {
		r.ctl("stop")
		r.command("epmd", "-port", fmt.Sprint(ports[2]), "-kill").Run()
		r.cmd.Process.Kill()
		r.cmd.Wait()
	})
	// await_startup fails at once while the node is not yet reachable: ask again until it answers.
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := r.ctl("await_startup", "--timeout", "5")
		if err == nil {
			return r
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			t.Fatalf("rabbitmq did not start within 90s: %v\n%s\n%s", err, out, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *RabbitMQ) command(name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if os.Getuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "rabbitmq", "--", "env"}, append(append(r.env[:len(r.env):len(r.env)], name), args...)...)...)
	} else {
		cmd = exec.Command(name, args...)
		cmd.Env = append(os.Environ(), r.env...)
	}
	return cmd
}

func (r *RabbitMQ) ctl(args ...string) ([]byte, error) {
	return r.command("/usr/lib/rabbitmq/bin/rabbitmqctl", append([]string{"-n", r.node}, args...)...).CombinedOutput()
}

// Stop stops the broker (the node stays, with its durable queues and persistent messages): every
// client connection is closed and new ones are refused until Start.
func (r *RabbitMQ) Stop(t testing.TB) {
	t.Helper()
	if out, err := r.ctl("stop_app"); err != nil {
		t.Fatalf("rabbitmqctl stop_app: %v\n%s", err, out)
	}
}

// Start starts the broker again after Stop and waits until it takes connections.
func (r *RabbitMQ) Start(t testing.TB) {
	t.Helper()
	if out, err := r.ctl("start_app"); err != nil {
		t.Fatalf("rabbitmqctl start_app: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := amqp091.Dial(r.URL); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("rabbitmq did not take connections within 60s of start_app")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
