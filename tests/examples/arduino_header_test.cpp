// Tests of examples/arduino-esp32/portal_device/portal_protocol.h, built and run by
// tests/examples/test_arduino_header.py with g++ -std=c++17 -Wall -Wextra -Werror.
//
//   arduino_header_test
//       the checks below: "ok <group>" for each group that passed, "FAIL ..." for each failed
//       check, then "passed N checks" or "failed N of M checks" (exit status 1);
//   arduino_header_test session <prefix> <device id> <command id> <boot> <epoch seconds>
//       the messages the sketch publishes in a short session, one per line as
//       "<topic>\t<payload>" (the Python test publishes them to a real broker and bridge).

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "portal_protocol.h"

namespace {

int checks = 0;
int failures = 0;
int failuresBefore = 0;

#define CHECK(condition)                                                      \
  do {                                                                        \
    ++checks;                                                                 \
    if (!(condition)) {                                                       \
      ++failures;                                                             \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #condition);       \
    }                                                                         \
  } while (0)

#define CHECK_STR(actual, expected)                                                  \
  do {                                                                               \
    ++checks;                                                                        \
    const char* got_ = (actual);                                                     \
    const char* want_ = (expected);                                                  \
    if (got_ == nullptr || std::strcmp(got_, want_) != 0) {                          \
      ++failures;                                                                    \
      std::printf("FAIL %s:%d: %s\n  got:      %s\n  expected: %s\n", __FILE__,       \
                  __LINE__, #actual, got_ == nullptr ? "(null)" : got_, want_);      \
    }                                                                                \
  } while (0)

void group(const char* name) {
  if (failures == failuresBefore) std::printf("ok %s\n", name);
  failuresBefore = failures;
}

using portal::Journal;
using portal::JsonWriter;
using portal::Outbox;
using portal::Reading;
using portal::Topics;

void testTopics() {
  Topics topics;
  CHECK(topics.set("portal", 7));
  CHECK_STR(topics.clientId, "dev-7");
  CHECK_STR(topics.root, "portal/dev-7");
  CHECK_STR(topics.status, "portal/dev-7/up/status");
  CHECK_STR(topics.heartbeat, "portal/dev-7/up/heartbeat");
  CHECK_STR(topics.readings, "portal/dev-7/up/readings");
  CHECK_STR(topics.down, "portal/dev-7/down/#");
  CHECK_STR(topics.commands, "portal/dev-7/down/commands");
  CHECK_STR(topics.acks, "portal/dev-7/down/acks");
  char result[portal::TOPIC_MAX];
  CHECK(topics.result(result, sizeof result, 42));
  CHECK_STR(result, "portal/dev-7/up/results/42");
  char tiny[20];
  CHECK(!topics.result(tiny, sizeof tiny, 42));

  CHECK(topics.kind("portal/dev-7/down/commands") == Topics::COMMAND);
  CHECK(topics.kind("portal/dev-7/down/acks") == Topics::ACK);
  CHECK(topics.kind("portal/dev-70/down/commands") == Topics::OTHER);
  CHECK(topics.kind("portal/dev-7/down/commands/x") == Topics::OTHER);
  CHECK(topics.kind("portal/dev-7/up/readings") == Topics::OTHER);
  CHECK(topics.kind(nullptr) == Topics::OTHER);

  CHECK(topics.set("site/b", 2147483647L));
  CHECK_STR(topics.readings, "site/b/dev-2147483647/up/readings");
  CHECK(!topics.set("", 7));
  CHECK(!topics.set(nullptr, 7));
  CHECK(!topics.set("por+tal", 7));
  CHECK(!topics.set("portal/#", 7));
  CHECK(!topics.set("portal", 0));
  CHECK(!topics.set("portal", -3));
  const std::string longPrefix(90, 'p');
  CHECK(!topics.set(longPrefix.c_str(), 7));
  group("topics");
}

void testJsonWriter() {
  char out[160];
  JsonWriter json(out, sizeof out);
  json.beginObject()
      .key("text")
      .string("say \"hi\" \\ tab\there\x01 \xc3\xa9")
      .key("n")
      .number(21.5)
      .key("int")
      .integer(-3)
      .key("yes")
      .boolean(true)
      .key("list")
      .beginArray()
      .number(1)
      .number(0.1)
      .number(-0.25)
      .number(1e21)
      .endArray()
      .key("empty")
      .beginObject()
      .endObject()
      .key("raw")
      .raw("{\"a\":[]}")
      .endObject();
  CHECK(json.ok());
  CHECK_STR(out,
            "{\"text\":\"say \\\"hi\\\" \\\\ tab\\u0009here\\u0001 \xc3\xa9\",\"n\":21.5,"
            "\"int\":-3,\"yes\":true,\"list\":[1,0.1,-0.25,1e+21],\"empty\":{},"
            "\"raw\":{\"a\":[]}}");
  CHECK(json.length() == std::strlen(out));

  JsonWriter nan(out, sizeof out);
  nan.beginArray().number(std::nan("")).endArray();
  CHECK(!nan.ok());
  JsonWriter inf(out, sizeof out);
  inf.beginArray().number(std::numeric_limits<double>::infinity()).endArray();
  CHECK(!inf.ok());

  // Never past its capacity, always NUL-terminated.
  char area[32];
  std::memset(area, 'X', sizeof area);
  JsonWriter small(area, 12);
  small.beginObject().key("firmware").string("a long version string").endObject();
  CHECK(!small.ok());
  CHECK(std::strlen(area) < 12);
  bool untouched = true;
  for (size_t i = 12; i < sizeof area; ++i) untouched = untouched && area[i] == 'X';
  CHECK(untouched);

  JsonWriter open(out, sizeof out);
  open.beginObject().key("a").integer(1);
  CHECK(!open.ok());  // not closed
  JsonWriter dangling(out, sizeof out);
  dangling.beginObject().key("a").endObject();
  CHECK(!dangling.ok());  // a key without a value
  JsonWriter extra(out, sizeof out);
  extra.beginArray().endArray().endArray();
  CHECK(!extra.ok());
  JsonWriter nothing(out, 0);
  nothing.beginObject().endObject();
  CHECK(!nothing.ok());
  group("json writer");
}

void testMessages() {
  char out[portal::MESSAGE_MAX];
  CHECK(portal::buildHeartbeat(out, sizeof out, "arduino-example 1.0.0"));
  CHECK_STR(out, "{\"firmware\":\"arduino-example 1.0.0\"}");
  CHECK(portal::buildResult(out, sizeof out, true, "{\"relay\":\"on\"}"));
  CHECK_STR(out, "{\"status\":\"succeeded\",\"result\":{\"relay\":\"on\"}}");
  CHECK(portal::buildResult(out, sizeof out, false, nullptr));
  CHECK_STR(out, "{\"status\":\"failed\",\"result\":{}}");
  CHECK(portal::buildResult(out, sizeof out, true, "not an object"));
  CHECK_STR(out, "{\"status\":\"succeeded\",\"result\":{}}");
  CHECK(portal::buildError(out, sizeof out, "unknown action: \"sing\""));
  CHECK_STR(out, "{\"error\":\"unknown action: \\\"sing\\\"\"}");
  char tiny[16];
  CHECK(!portal::buildHeartbeat(tiny, sizeof tiny, "arduino-example 1.0.0"));
  CHECK(std::strlen(tiny) < sizeof tiny);
  group("heartbeat and result");
}

void testTime() {
  char out[portal::TIME_MAX];
  CHECK(portal::formatUtc(out, sizeof out, 1767225600LL));
  CHECK_STR(out, "2026-01-01T00:00:00Z");
  CHECK(portal::formatUtc(out, sizeof out, 1709210096LL));
  CHECK_STR(out, "2024-02-29T12:34:56Z");
  CHECK(portal::formatUtc(out, sizeof out, 1704067200LL));
  CHECK_STR(out, "2024-01-01T00:00:00Z");
  CHECK(portal::formatUtc(out, sizeof out, 4107542400LL));
  CHECK_STR(out, "2100-03-01T00:00:00Z");
  CHECK(portal::formatUtc(out, sizeof out, 4107542399LL));
  CHECK_STR(out, "2100-02-28T23:59:59Z");  // 2100 is no leap year
  CHECK(!portal::formatUtc(out, sizeof out, 1704067199LL));  // not set yet: before 2024
  CHECK_STR(out, "");
  CHECK(!portal::formatUtc(out, sizeof out, 0));
  CHECK(!portal::formatUtc(out, sizeof out, 253402300800LL));  // year 10000
  char small[10];
  CHECK(!portal::formatUtc(small, sizeof small, 1767225600LL));
  group("time");
}

void testMetrics() {
  CHECK(portal::validMetric("temperature"));
  CHECK(portal::validMetric("wifi_rssi"));
  CHECK(portal::validMetric("a.b-c_9"));
  CHECK(portal::validMetric(std::string(64, 'm').c_str()));
  CHECK(!portal::validMetric(std::string(65, 'm').c_str()));
  CHECK(!portal::validMetric(""));
  CHECK(!portal::validMetric(nullptr));
  CHECK(!portal::validMetric("Temperature"));
  CHECK(!portal::validMetric("air temp"));
  CHECK(!portal::validMetric("temp\"x"));
  group("metric names");
}

void testOutbox() {
  static Outbox box;
  CHECK(!box.add(nullptr, 0, nullptr));  // before begin()
  CHECK(box.begin("b00t"));
  const Reading two[] = {{"temperature", 21.5}, {"wifi_rssi", -61}};
  CHECK(box.add(two, 2, "2026-01-01T00:00:00Z"));
  CHECK(box.pending() == 1);
  const char* first =
      "{\"readings\":[{\"metric\":\"temperature\",\"value\":21.5,\"ts\":\"2026-01-01T00:00:00Z\"},"
      "{\"metric\":\"wifi_rssi\",\"value\":-61,\"ts\":\"2026-01-01T00:00:00Z\"}],"
      "\"key\":\"b00t-1\"}";
  CHECK_STR(box.due(1000, 30000), first);
  CHECK(box.due(1001, 30000) == nullptr);   // in flight
  CHECK(box.due(30999, 30000) == nullptr);  // not late yet
  CHECK_STR(box.due(31000, 30000), first);  // late: the same bytes again
  CHECK(box.due(31001, 30000) == nullptr);
  box.resendNow();  // after a reconnect
  CHECK_STR(box.due(31002, 30000), first);
  CHECK(!box.acked("b00t-2"));
  CHECK(!box.acked(nullptr));
  CHECK_STR(box.oldestKey(), "b00t-1");
  CHECK(box.acked("b00t-1"));
  CHECK(box.pending() == 0);
  CHECK(box.due(90000, 30000) == nullptr);
  CHECK(!box.acked("b00t-1"));  // an answer to a copy, after the first one settled it

  const Reading one[] = {{"soil.moisture", 0.125}};
  CHECK(box.add(one, 1, nullptr));  // clock not set: no ts
  CHECK_STR(box.due(90001, 30000),
            "{\"readings\":[{\"metric\":\"soil.moisture\",\"value\":0.125}],\"key\":\"b00t-2\"}");
  CHECK(box.acked("b00t-2"));

  // What the portal would refuse is not queued (and uses no key).
  const Reading badName[] = {{"Temperature", 1}};
  const Reading nan[] = {{"temperature", std::nan("")}};
  CHECK(!box.add(badName, 1, nullptr));
  CHECK(!box.add(nan, 1, nullptr));
  CHECK(!box.add(one, 0, nullptr));
  Reading many[12];
  const std::string name(60, 'm');
  for (Reading& reading : many) reading = {name.c_str(), 123456.789};
  CHECK(!box.add(many, 12, "2026-01-01T00:00:00Z"));  // over BATCH_MAX
  CHECK(box.pending() == 0);
  CHECK(box.add(one, 1, nullptr));
  CHECK_STR(box.oldestKey(), "b00t-3");
  CHECK(box.acked("b00t-3"));

  // Full: the oldest are dropped, the newest kept, in order.
  for (int i = 0; i < Outbox::SLOTS + 2; ++i) CHECK(box.add(one, 1, nullptr));
  CHECK(box.pending() == Outbox::SLOTS);
  CHECK(box.dropped() == 2);
  CHECK_STR(box.oldestKey(), "b00t-6");
  for (int i = 6; i < 6 + Outbox::SLOTS; ++i) {
    const std::string key = "b00t-" + std::to_string(i);
    CHECK(box.due(100000, 30000) != nullptr);
    CHECK(box.acked(key.c_str()));
  }
  CHECK(box.pending() == 0);

  // millis() wraps after 49 days.
  CHECK(box.add(one, 1, nullptr));
  CHECK(box.due(0xFFFFFF00u, 30000) != nullptr);
  CHECK(box.due(0x00000100u, 30000) == nullptr);  // 512 ms later
  CHECK(box.due(0x00007500u, 30000) != nullptr);  // 30 s later

  Outbox other;
  CHECK(!other.begin(""));
  CHECK(!other.begin("has space"));
  CHECK(!other.begin("quote\""));
  CHECK(!other.begin("12345678901234567"));
  CHECK(other.begin("1234567890123456"));
  group("outbox");
}

void testJournal() {
  char message[portal::MESSAGE_MAX];
  static Journal journal;
  CHECK(journal.decide(5) == Journal::RUN);
  journal.started(5);
  CHECK(journal.decide(5) == Journal::REPORT_AGAIN);
  CHECK(journal.report(5, message, sizeof message));
  CHECK_STR(message,
            "{\"status\":\"failed\",\"result\":{\"error\":\"interrupted by a restart; not run "
            "again\"}}");
  journal.finished(5, true, "{\"relay\":\"on\"}");
  CHECK(journal.decide(5) == Journal::REPORT_AGAIN);
  CHECK(journal.report(5, message, sizeof message));
  CHECK_STR(message, "{\"status\":\"succeeded\",\"result\":{\"relay\":\"on\"}}");
  journal.started(6);
  journal.finished(6, false, "no JSON\nat all");
  CHECK(journal.report(6, message, sizeof message));
  CHECK_STR(message, "{\"status\":\"failed\",\"result\":{}}");
  CHECK(journal.decide(3) == Journal::RUN);  // older, but nothing was forgotten: never seen
  journal.started(7);

  char saved[Journal::SAVED_MAX];
  CHECK(journal.save(saved, sizeof saved));
  CHECK_STR(saved, "0\n5 s {\"relay\":\"on\"}\n6 f {}\n7 r \n");
  static Journal restarted;
  CHECK(restarted.load(saved));
  CHECK(restarted.size() == 3);
  CHECK(restarted.decide(5) == Journal::REPORT_AGAIN);
  CHECK(restarted.decide(7) == Journal::REPORT_AGAIN);  // cut short by the restart: not again
  CHECK(restarted.report(7, message, sizeof message));
  CHECK_STR(message,
            "{\"status\":\"failed\",\"result\":{\"error\":\"interrupted by a restart; not run "
            "again\"}}");
  CHECK(restarted.report(5, message, sizeof message));
  CHECK_STR(message, "{\"status\":\"succeeded\",\"result\":{\"relay\":\"on\"}}");
  CHECK(restarted.decide(8) == Journal::RUN);

  // Full: the entry remembered longest makes room, and its id (or an older one) is not run.
  // Command 11 ran first, 10 after it: once 11 is forgotten, neither runs again.
  static Journal full;
  full.started(11);
  full.finished(11, true, "{}");
  for (long id = 10; id < 10 + Journal::SLOTS; ++id) {
    if (id == 11) continue;
    CHECK(full.decide(id) == Journal::RUN);
    full.started(id);
    full.finished(id, true, "{\"n\":1}");
  }
  CHECK(full.size() == Journal::SLOTS);
  CHECK(full.forgotten() == 0);
  CHECK(full.decide(26) == Journal::RUN);
  full.started(26);
  full.finished(26, true, "{}");
  CHECK(full.forgotten() == 11);
  CHECK(full.decide(11) == Journal::TOO_OLD);
  CHECK(full.decide(10) == Journal::REPORT_AGAIN);
  CHECK(full.decide(9) == Journal::TOO_OLD);
  CHECK(full.report(11, message, sizeof message));
  CHECK_STR(message,
            "{\"status\":\"failed\",\"result\":{\"error\":\"too old to tell whether it ran; "
            "not run\"}}");
  CHECK(full.decide(27) == Journal::RUN);

  // The longest results still fit what save() is given room for.
  const std::string longest = "{\"x\":\"" + std::string(portal::RESULT_MAX - 10, 'y') + "\"}";
  for (long id = 100; id < 100 + Journal::SLOTS; ++id) {
    full.started(id);
    full.finished(id, false, longest.c_str());
  }
  CHECK(full.forgotten() == 26);
  CHECK(full.save(saved, sizeof saved));
  static Journal copy;
  CHECK(copy.load(saved));
  CHECK(copy.size() == Journal::SLOTS);
  CHECK(copy.forgotten() == 26);
  char again[portal::MESSAGE_MAX * 2];
  CHECK(copy.report(100, again, sizeof again));
  CHECK(std::strstr(again, longest.c_str()) != nullptr);
  char cramped[40];
  CHECK(!full.save(cramped, sizeof cramped));
  CHECK(std::strlen(cramped) < sizeof cramped);

  // Anything but save()'s text leaves an empty journal.
  const char* broken[] = {
      "",   "x\n",        "0",          "0\n5 s {}",   "0\n5 q {}\n", "0\n-3 s {}\n",
      "0\n5 s{}\n",   "0\n5\n",     "-1\n",        "0\n5 s {}\n5 f {}\n",
  };
  for (const char* text : broken) {
    Journal parsed;
    CHECK(!parsed.load(text));
    CHECK(parsed.size() == 0);
    CHECK(parsed.decide(1) == Journal::RUN);
  }
  CHECK(!copy.load(nullptr));
  std::string tooMany = "0\n";
  for (int i = 1; i <= Journal::SLOTS + 1; ++i) tooMany += std::to_string(i) + " s {}\n";
  CHECK(!copy.load(tooMany.c_str()));
  CHECK(copy.load("0\n"));  // empty, as saved by a journal that ran nothing
  CHECK(copy.size() == 0);
  group("journal");
}

// The messages of a short session, as the sketch publishes them.
int session(const char* prefix, long deviceId, long commandId, const char* boot, long long now) {
  Topics topics;
  static Outbox outbox;
  static Journal journal;
  if (!topics.set(prefix, deviceId) || !outbox.begin(boot)) return 2;
  char message[portal::MESSAGE_MAX];
  std::printf("%s\t%s\n", topics.status, "online");
  if (!portal::buildHeartbeat(message, sizeof message, "arduino-example 1.0.0")) return 2;
  std::printf("%s\t%s\n", topics.heartbeat, message);

  char at[portal::TIME_MAX];
  const Reading sample[] = {{"temperature", 21.5}, {"wifi_rssi", -61}};
  if (!portal::formatUtc(at, sizeof at, now) || !outbox.add(sample, 2, at)) return 2;
  const Reading unset[] = {{"temperature", 22.25}};
  if (!outbox.add(unset, 1, nullptr)) return 2;  // a sample taken before the clock was set
  for (uint32_t ms = 0; outbox.pending() > 0; ms += 1000) {
    const char* batch = outbox.due(ms, 30000);
    if (batch == nullptr) return 2;
    std::printf("%s\t%s\n", topics.readings, batch);
    if (!outbox.acked(outbox.oldestKey())) return 2;
  }

  char topic[portal::TOPIC_MAX];
  if (!topics.result(topic, sizeof topic, commandId)) return 2;
  for (int delivery = 0; delivery < 2; ++delivery) {  // pushed, then pushed again
    if (journal.decide(commandId) == Journal::RUN) {
      journal.started(commandId);
      journal.finished(commandId, true, "{\"relay\":\"on\"}");
    }
    if (!journal.report(commandId, message, sizeof message)) return 2;
    std::printf("%s\t%s\n", topic, message);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 7 && std::strcmp(argv[1], "session") == 0) {
    return session(argv[2], std::strtol(argv[3], nullptr, 10), std::strtol(argv[4], nullptr, 10),
                   argv[5], std::strtoll(argv[6], nullptr, 10));
  }
  if (argc != 1) {
    std::fprintf(stderr, "usage: %s [session PREFIX DEVICE_ID COMMAND_ID BOOT EPOCH]\n", argv[0]);
    return 2;
  }
  testTopics();
  testJsonWriter();
  testMessages();
  testTime();
  testMetrics();
  testOutbox();
  testJournal();
  if (failures > 0) {
    std::printf("failed %d of %d checks\n", failures, checks);
    return 1;
  }
  std::printf("passed %d checks\n", checks);
  return 0;
}
