// pipeline.cpp: brokk's order pipeline demo (examples/c/pipeline.c) on the C++ binding.
//
//   main --publish--> "orders" --+--> transform (parse, price, upper-case) --publish--> "invoices"
//                                 +--> audit (fan-out: its own copy of every order)
//   "invoices" --> sink (manual ack) --> committer thread --ack-->
//   "jobs" (priorities, routed before any worker exists) --fetch--> two competing workers
//
// Run it with `make demo-cpp`. Handlers run on brokk's worker threads, the listener on brokk's
// listener thread, the committer and the two job workers on std::threads of ours, so the live
// log interleaves; what the stages learn goes into `Pipeline` and is printed, sorted, after join.
#include <brokk.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using brokk::Verdict;

namespace {

constexpr int order_count = 6;
constexpr int flaky_order = 3;  // fails on its first attempt, as if a service had timed out

// One whole line at a time: stages print from several threads at once.
std::mutex print_lock;
void say(const std::string& line) {
    std::lock_guard<std::mutex> lock(print_lock);
    std::fputs(line.c_str(), stdout);
    std::fputc('\n', stdout);
}

// Finds `"key":` in a flat JSON object and returns what follows. Enough for this demo's payloads;
// a real program would use a JSON parser.
std::optional<std::string_view> json_field(std::string_view json, std::string_view key) {
    const std::string pattern = "\"" + std::string(key) + "\"";
    std::size_t at = json.find(pattern);
    if (at == std::string_view::npos) return std::nullopt;
    at = json.find_first_not_of(' ', at + pattern.size());
    if (at == std::string_view::npos || json[at] != ':') return std::nullopt;
    at = json.find_first_not_of(' ', at + 1);
    if (at == std::string_view::npos) return std::nullopt;
    return json.substr(at);
}

long json_number(std::string_view json, std::string_view key) {
    const auto f = json_field(json, key);
    return f ? std::strtol(std::string(f->substr(0, 20)).c_str(), nullptr, 10) : 0;
}

// The order number of an order or invoice payload, or 0 if it is not one of ours.
int order_number(std::string_view json) {
    const long n = json_number(json, "order");
    return n >= 1 && n <= order_count ? static_cast<int>(n) : 0;
}

long price_cents(const std::string& item) {
    static const std::map<std::string, long> prices = {
        {"anvil", 2990}, {"rope", 425}, {"lantern", 1250}, {"dynamite", 775}, {"magnet", 1999}, {"rocket", 14900},
    };
    const auto it = prices.find(item);
    return it == prices.end() ? -1 : it->second;
}

// ---- what the stages record, read by main after join -----------------------------------------

struct OrderRecord {
    std::uint32_t attempts = 0;  // the attempt on which transform succeeded; 0 = never
    std::uint64_t transform_delivery = 0, audit_delivery = 0;
    std::string parent_id;  // the published id both deliveries copy
    bool audited = false, committed = false;
    std::string invoice;
};

// What the sink hands to the committer: copies, not views (a Message dies with its handler call).
struct CommitJob {
    std::uint64_t delivery_id;
    std::string invoice_id, invoice, metadata;
};

struct Pipeline {
    brokk::BrokerRef broker;  // a non-owning handle: safe to share with every thread
    std::mutex lock;                // stages run on different worker threads
    OrderRecord orders[order_count + 1];  // indexed by order number
    std::condition_variable queue_ready;  // the committer's queue, under `lock` too
    std::deque<CommitJob> queue;
    bool stopping = false;
    int commit_failures = 0;
};

// ---- stage 1: transform "orders" into "invoices" (a worker thread) -------------------------

Verdict transform_order(Pipeline& p, const brokk::Message& msg) {
    const std::string_view order = msg.payload();  // a view: valid during this call only
    const int number = order_number(order);
    const long qty = json_number(order, "qty");
    std::string item;
    if (const auto f = json_field(order, "item"); f && f->size() > 1 && f->front() == '"')
        item = std::string(f->substr(1, f->find('"', 1) - 1));
    const long cents = price_cents(item);
    // An exception from a handler becomes a NACK with what() as the failure reason.
    if (number == 0 || qty < 1 || cents < 0) throw std::invalid_argument("malformed order");

    const std::uint32_t attempt = msg.attempt();
    if (number == flaky_order && attempt == 1) {  // REQUEUE: back of the queue, attempt 2
        msg.set_failure_reason("inventory service timed out (simulated)");
        return Verdict::Requeue;
    }

    std::transform(item.begin(), item.end(), item.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    const long total = qty * cents;
    char invoice[256];
    std::snprintf(invoice, sizeof invoice, "{\"order\": %d, \"item\": \"%s\", \"qty\": %ld, \"total\": %ld.%02ld}",
                  number, item.c_str(), qty, total / 100, total % 100);
    const std::string parent(msg.parent_id());  // our ids are plain: safe inside JSON
    brokk::PublishOptions options;
    options.id = "invoice-" + std::to_string(number);
    options.metadata = "{\"source_id\": \"" + parent + "\", \"source_delivery\": " +
                       std::to_string(msg.delivery_id()) + "}";
    // Re-entrant publish: allowed from a handler (only join and a non-forced close are not). If
    // it throws, the delivery is nacked with the error as its reason.
    p.broker.publish("invoices", invoice, options);

    std::lock_guard<std::mutex> lock(p.lock);
    OrderRecord& r = p.orders[number];
    r.attempts = attempt;
    r.transform_delivery = msg.delivery_id();
    r.parent_id = parent;
    return Verdict::Ack;  // auto-ack subscription: the verdict settles it
}

// ---- fan-out: audit gets its own delivery of every order (a worker thread) -----------------

Verdict audit_order(Pipeline& p, const brokk::Message& msg) {
    const int number = order_number(msg.payload());
    if (number == 0) throw std::invalid_argument("unknown order");
    std::lock_guard<std::mutex> lock(p.lock);
    p.orders[number].audited = true;
    p.orders[number].audit_delivery = msg.delivery_id();
    return Verdict::Ack;
}

// ---- stage 2: sink on "invoices", manual ack (a worker thread) -----------------------------

Verdict sink_invoice(Pipeline& p, const brokk::Message& msg) {
    CommitJob job{msg.delivery_id(), std::string(msg.parent_id()), std::string(msg.payload()),
                  std::string(msg.metadata())};
    std::lock_guard<std::mutex> lock(p.lock);
    p.queue.push_back(std::move(job));
    p.queue_ready.notify_one();
    // LATER: the delivery stays in flight until the committer acks it (join waits for that).
    // brokk registers it before calling us, so an ack that beats our return is fine too.
    return Verdict::Later;
}

// The committer: our own thread, not brokk's. It commits (prints) and acks by delivery id.
void committer_main(Pipeline& p) {
    for (;;) {
        std::unique_lock<std::mutex> lock(p.lock);
        p.queue_ready.wait(lock, [&] { return !p.queue.empty() || p.stopping; });
        if (p.queue.empty()) return;  // stopping and drained
        CommitJob job = std::move(p.queue.front());
        p.queue.pop_front();
        lock.unlock();

        say("committer: committed " + job.invoice_id + " " + job.invoice + " (metadata " + job.metadata + ")");
        const int number = order_number(job.invoice);
        lock.lock();
        if (number != 0) {
            p.orders[number].committed = true;
            p.orders[number].invoice = job.invoice;
        }
        lock.unlock();
        try {
            p.broker.ack(job.delivery_id);
        } catch (const brokk::Error& e) {
            say(std::string("ack failed: ") + e.what());
            lock.lock();
            p.commit_failures++;
        }
    }
}

// ---- the listener (brokk's single listener thread, one event at a time) --------------------

// Shared by the listener's callbacks; destroyed with the listener, which brokk does exactly
// once after its last callback (here when the broker is destroyed).
struct ListenerCounts {
    std::atomic<unsigned long> events{0}, published{0}, dispatched{0}, processed{0}, failed{0};
    ~ListenerCounts() { say("listener released after " + std::to_string(events.load()) + " events"); }
};

brokk::Listener make_listener(const std::shared_ptr<ListenerCounts>& c) {
    // Keep callbacks short: a slow listener delays the other listeners (never deliveries).
    brokk::Listener l;
    l.on_topic_created = [c](std::string_view topic) {
        c->events++;
        say("listener: topic \"" + std::string(topic) + "\" created");
    };
    l.on_subscribe = [c](std::string_view topic, std::uint64_t id) {
        c->events++;
        say("listener: subscription " + std::to_string(id) + " on \"" + std::string(topic) + "\"");
    };
    l.on_failed = [c](const brokk::Message& msg, std::string_view reason, bool requeued) {
        c->events++;
        c->failed++;
        say("listener: FAILED " + std::string(msg.parent_id()) + " (delivery " + std::to_string(msg.delivery_id()) +
            ", attempt " + std::to_string(msg.attempt()) + "): " + std::string(reason) +
            ", requeued=" + (requeued ? "true" : "false"));
    };
    l.on_publish = [c](const brokk::Message&) {
        c->events++;
        c->published++;
    };
    l.on_dispatched = [c](const brokk::Message&) {
        c->events++;
        c->dispatched++;
    };
    l.on_processed = [c](const brokk::Message&) {
        c->events++;
        c->processed++;
    };
    return l;
}

// ---- a prioritised work queue: two worker threads of ours compete (pull) -------------------

constexpr int job_count = 8;

struct JobQueue {
    std::mutex lock;
    int done = 0;  // jobs acked so far, by either worker
    int failures = 0;
};

// Fetches from the group "workers": both workers are members, so each job goes to exactly one of
// them, highest priority first. A fetched Delivery owns its handle; destroying it does not
// settle it, so ack first. Returns the priorities in the order this worker took them.
std::vector<std::int32_t> worker_main(brokk::BrokerRef broker, JobQueue& q, int number) {
    std::vector<std::int32_t> taken;
    // An ack deadline: were this worker to die holding a job, the job would go back to the group
    // after 30 s instead of waiting for ever.
    brokk::FetchOptions fetch;
    fetch.group = "workers";
    fetch.ack_deadline = 30s;
    for (;;) {
        {
            std::lock_guard<std::mutex> lock(q.lock);
            if (q.done == job_count || q.failures > 0) return taken;
        }
        try {
            std::optional<brokk::Delivery> delivery = broker.fetch("jobs", 100ms, fetch);
            if (!delivery) continue;  // nothing within 100 ms: look whether the other took the rest
            const brokk::Message msg = delivery->message();
            say("worker " + std::to_string(number) + ": " + std::string(msg.payload()) + " (priority " +
                std::to_string(msg.priority()) + ")");
            taken.push_back(msg.priority());
            std::this_thread::sleep_for(3ms);  // the "work"
            broker.ack(msg);
            std::lock_guard<std::mutex> lock(q.lock);
            q.done++;
        } catch (const brokk::Error& e) {
            say(std::string("worker failed: ") + e.what());
            std::lock_guard<std::mutex> lock(q.lock);
            q.failures++;
        }
    }
}

// Routes jobs before any worker exists (the topic retains them for the first group), then lets
// two workers drain the queue. Returns whether every job was done in priority order.
bool run_work_queue(brokk::BrokerRef broker) {
    const std::pair<const char*, std::int32_t> jobs[job_count] = {
        {"resize-thumbnails", 1}, {"send-invoice-emails", 5}, {"rebuild-search-index", 0},
        {"charge-cards", 9},      {"nightly-report", -1},     {"refund-order-3", 9},
        {"warm-cache", 0},        {"fraud-check", 5},
    };
    std::vector<brokk::BatchMessage> batch;  // one batch: all jobs or none, one call
    for (const auto& [job, priority] : jobs) {
        brokk::BatchMessage m;
        m.payload = "\"" + std::string(job) + "\"";
        m.options.priority = priority;
        batch.push_back(std::move(m));
    }
    broker.publish_batch("jobs", batch);
    say("jobs: " + std::to_string(broker.count({"jobs"})) + " waiting, retained until the first worker's fetch");

    JobQueue q;
    std::vector<std::int32_t> taken[2];
    std::thread workers[2];
    for (int i = 0; i < 2; i++) workers[i] = std::thread([&, i] { taken[i] = worker_main(broker, q, i + 1); });
    for (std::thread& w : workers) w.join();

    // Each worker fetched one job at a time from one queue, so each saw priorities falling.
    const bool ordered = std::is_sorted(taken[0].rbegin(), taken[0].rend()) &&
                         std::is_sorted(taken[1].rbegin(), taken[1].rend());
    say("jobs: " + std::to_string(q.done) + " of " + std::to_string(job_count) + " done by 2 competing workers (" +
        std::to_string(taken[0].size()) + " + " + std::to_string(taken[1].size()) +
        "); each took its jobs highest priority first: " + (ordered ? "yes" : "NO"));
    return q.done == job_count && q.failures == 0 && ordered && taken[0].size() + taken[1].size() == job_count;
}

// ---- the pipeline ---------------------------------------------------------------------------

// Returns whether everything worked. The broker is destroyed on return, which runs the
// listener's destructor (printing "listener released ...").
// Runs the committer thread; on destruction (the normal path or an exception) tells it to stop
// once its queue is drained, and joins it.
class Committer {
public:
    explicit Committer(Pipeline& p) : p_(p), thread_([&p] { committer_main(p); }) {}
    Committer(const Committer&) = delete;
    Committer& operator=(const Committer&) = delete;
    ~Committer() { join(); }
    void join() {
        if (!thread_.joinable()) return;
        {
            std::lock_guard<std::mutex> lock(p_.lock);
            p_.stopping = true;
            p_.queue_ready.notify_one();
        }
        thread_.join();
    }

private:
    Pipeline& p_;
    std::thread thread_;
};

bool run_pipeline() {
    Pipeline p;  // declared before the broker: it outlives every handler that uses it
    brokk::BrokerOptions options;
    options.worker_threads = 4;  // zero fields mean defaults
    brokk::Broker broker(options);
    p.broker = broker.ref();

    // The listener owns `counts` through its callbacks; we keep a borrowed pointer, valid until
    // the broker is destroyed.
    auto owned_counts = std::make_shared<ListenerCounts>();
    const ListenerCounts* counts = owned_counts.get();
    broker.add_listener(make_listener(owned_counts));
    owned_counts.reset();

    Committer committer(p);
    // concurrency 1 (the default): each stage handles its deliveries one at a time, in order.
    brokk::SubscriptionOptions manual_ack;
    manual_ack.manual_ack = true;
    broker.subscribe("orders", [&p](const brokk::Message& m) { return transform_order(p, m); });
    broker.subscribe("orders", [&p](const brokk::Message& m) { return audit_order(p, m); });
    broker.subscribe("invoices", [&p](const brokk::Message& m) { return sink_invoice(p, m); }, manual_ack);
    // join also waits for listener events, so the setup lines above print before we go on.
    broker.join(10s);

    say("\n-- live log: main, the listener and the committer interleave --");
    const std::pair<const char*, long> orders[order_count] = {
        {"anvil", 2}, {"rope", 10}, {"lantern", 3}, {"dynamite", 12}, {"magnet", 1}, {"rocket", 1},
    };
    for (int i = 0; i < order_count; i++) {
        const std::string payload = "{\"order\": " + std::to_string(i + 1) + ", \"item\": \"" + orders[i].first +
                                    "\", \"qty\": " + std::to_string(orders[i].second) + "}";
        // Our own ids keep the story readable; without one, brokk generates it and publish
        // returns it.
        brokk::PublishOptions o;
        o.id = "order-" + std::to_string(i + 1);
        o.metadata = "{\"channel\": \"web\"}";
        say("main: publishing " + *o.id + " " + payload);
        broker.publish("orders", payload, o);
    }

    // Wait for the whole pipeline: every delivery settled (the committer's acks included) and
    // every listener event delivered. Bounded, so a stuck stage cannot hang the demo.
    try {
        broker.join(10s);
    } catch (const brokk::TimeoutError& e) {
        say("join: " + std::to_string(e.remaining()) + " deliveries still outstanding");
        throw;
    }

    committer.join();
    say("main: committer joined");

    say("\n-- results, sorted by order --");
    int invoiced = 0;
    for (int n = 1; n <= order_count; n++) {
        const OrderRecord& r = p.orders[n];
        invoiced += r.committed;
        say("order-" + std::to_string(n) + ": transform attempts=" + std::to_string(r.attempts) +
            " audited=" + (r.audited ? "yes" : "no") + " committed=" + (r.committed ? "yes" : "no") + " " + r.invoice);
    }
    say("invoiced " + std::to_string(invoiced) + " of " + std::to_string(order_count) + " orders");
    const OrderRecord& first = p.orders[1];
    say("fan-out: " + first.parent_id + " went to transform as delivery " + std::to_string(first.transform_delivery) +
        " and to audit as delivery " + std::to_string(first.audit_delivery) + ", both with parent id " + first.parent_id);
    say("listener saw " + std::to_string(counts->events) + " events: published=" + std::to_string(counts->published) +
        " dispatched=" + std::to_string(counts->dispatched) + " processed=" + std::to_string(counts->processed) +
        " failed=" + std::to_string(counts->failed));

    const brokk::Stats s = broker.stats();
    std::ostringstream line;
    line << "stats: published=" << s.published << " unrouted=" << s.unrouted << " dispatched=" << s.dispatched
         << " processed=" << s.processed << " failed=" << s.failed << " requeued=" << s.requeued
         << " dropped=" << s.dropped << " in_flight=" << s.in_flight;
    say(line.str());
    line.str("");
    line << "stats: topics=" << s.topics << " subscriptions=" << s.subscriptions << " listeners=" << s.listeners
         << " workers=" << s.workers << " listener_events_dropped=" << s.listener_events_dropped;
    say(line.str());
    say("stats JSON: " + broker.stats_json());  // a std::string: brokk's copy is already freed

    say("\n-- a prioritised work queue --");
    const bool jobs_ok = run_work_queue(broker);

    // close stops new work and drains (nothing is left); a timeout would throw TimeoutError.
    const brokk::CloseReport closed = broker.close(5s);
    say("close: ok (" + std::to_string(closed.remaining) + " deliveries left, " +
        std::to_string(closed.retained_discarded) + " retained messages discarded)");
    return invoiced == order_count && p.commit_failures == 0 && jobs_ok;
}  // ~Broker frees the broker: the handlers and the listener (ListenerCounts) are destroyed

}  // namespace

int main() {
    if (brokk::abi_version() != brokk::header_abi_version) {
        std::fprintf(stderr, "built against brokk ABI %u, running with %u\n", brokk::header_abi_version,
                     brokk::abi_version());
        return 1;
    }
    say("brokk " + std::string(brokk::version()) + ": order pipeline demo (C++)");
    bool ok = false;
    try {
        ok = run_pipeline();
    } catch (const brokk::Error& e) {
        std::fprintf(stderr, "brokk error %u (%s): %s\n", static_cast<unsigned>(e.status()),
                     std::string(brokk::status_str(e.status())).c_str(), e.what());
    }
    say(ok ? "pipeline done" : "pipeline FAILED");
    return ok ? 0 : 1;
}
