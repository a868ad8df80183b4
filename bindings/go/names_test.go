package brokk

import (
	"errors"
	"strings"
	"testing"
)

// The vectors of core/src/names.rs, checked in every language.
var topicNameVectors = []struct {
	in   string
	max  int
	want string
}{
	{"default", 255, "default"},
	{"orders.eu-west1", 255, "orders.eu-west1"},
	{"my app", 255, "my_20app"},
	{"billing(v2)", 255, "billing_28v2_29"},
	{"team/app", 255, "team_2fapp"},
	{"a_b", 255, "a_5fb"},
	{"\u00fc", 255, "_c3_bc"},
	{"", 255, ""},
	{"abcdefghijklmnopqrstuvwxyz", 20, "ab_x8450deb1cdc382a2"},
}

func TestTopicNameVectors(t *testing.T) {
	for _, v := range topicNameVectors {
		got, err := TopicName(v.in, v.max)
		if err != nil || got != v.want {
			t.Errorf("TopicName(%q, %d) = %q, %v; want %q", v.in, v.max, got, err, v.want)
		}
	}
}

func TestTopicNameLongAndInvalid(t *testing.T) {
	got, err := TopicName(strings.Repeat("x", 300), TopicMaxLen)
	if err != nil || len(got) != TopicMaxLen || !strings.Contains(got, "_x") {
		t.Errorf("300 bytes: %q, %v", got, err)
	}
	if _, err := TopicName("\xff", TopicMaxLen); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("invalid UTF-8: %v", err)
	}
	if _, err := TopicName(strings.Repeat("x", 300), 10); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("maxLen 10: %v", err)
	}
}
