// One of two translation units that include brokk.hpp (the other is odr_b.cpp) and are linked
// into one program: a non-inline definition in the header would fail to link. brokk.hpp comes
// first, alone, to show that it compiles on its own; both files instantiate the same templates
// (a function-pointer handler, a Listener) so the linker has to merge them.
#include <brokk.hpp>

#include <string>

namespace {
brokk::Verdict ack(const brokk::Message&) { return brokk::Verdict::Ack; }
}  // namespace

std::string odr_round_trip_a() {
    std::string seen;  // declared first: it outlives the broker whose listener writes it
    brokk::Broker broker;
    brokk::Listener listener;
    listener.on_processed = [&seen](const brokk::Message& m) { seen = "a:" + std::string(m.payload()); };
    broker.add_listener(std::move(listener));
    brokk::Verdict (*handler)(const brokk::Message&) = &ack;
    broker.subscribe("odr", handler);
    broker.publish("odr", "{\"from\":\"a\"}");
    broker.join(brokk::forever);
    broker.close(brokk::forever);
    return seen;
}
