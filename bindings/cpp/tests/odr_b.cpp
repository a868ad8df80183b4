// The second translation unit including brokk.hpp; see odr_a.cpp.
#include <brokk.hpp>

#include <string>

namespace {
brokk::Verdict ack(const brokk::Message&) { return brokk::Verdict::Ack; }
}  // namespace

std::string odr_round_trip_b() {
    std::string seen;  // declared first: it outlives the broker whose listener writes it
    brokk::Broker broker;
    brokk::Listener listener;
    listener.on_processed = [&seen](const brokk::Message& m) { seen = "b:" + std::string(m.payload()); };
    broker.add_listener(std::move(listener));
    brokk::Verdict (*handler)(const brokk::Message&) = &ack;
    broker.subscribe("odr", handler);
    broker.publish("odr", "{\"from\":\"b\"}");
    broker.join(brokk::forever);
    broker.close(brokk::forever);
    return seen;
}
