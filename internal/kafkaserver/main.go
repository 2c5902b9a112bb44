// Command kafkaserver runs franz-go's kfake, a Kafka-protocol cluster written by franz-go's
// author, as a process of its own on 127.0.0.1: no Kafka broker is packaged for Debian, and the
// tests (and MinIO's Kafka target) need one. FOR TESTS ONLY. With -data the cluster keeps its
// topics, records and committed offsets across a restart, as a broker does.
//
//	kafkaserver -listen 127.0.0.1:19092 -data DIR [-partitions 3]
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:19092", "address to listen on (one broker)")
	data := flag.String("data", "", "directory that keeps the cluster's state across restarts (empty: in memory)")
	partitions := flag.Int("partitions", 3, "partitions of an auto-created topic")
	flag.Parse()
	host, port, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("kafkaserver: -listen %q: %v", *listen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		log.Fatalf("kafkaserver: -listen %q: port: %v", *listen, err)
	}
	opts := []kfake.Opt{kfake.Ports(p), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(*partitions),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, port))
		})}
	if *data != "" {
		opts = append(opts, kfake.DataDir(*data), kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		log.Fatalf("kafkaserver: %v", err)
	}
	fmt.Println("kafkaserver: listening on", c.ListenAddrs())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	c.Close()
}
