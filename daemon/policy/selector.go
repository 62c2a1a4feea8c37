// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// selector is a compiled metav1.LabelSelector: every requirement must hold.
type selector []requirement

type requirement struct {
	key    string
	op     metav1.LabelSelectorOperator
	values []string
}

// compileSelector turns ls into a selector; an empty selector matches
// everything.
func compileSelector(ls *metav1.LabelSelector) (selector, error) {
	var s selector
	for k, v := range ls.MatchLabels {
		s = append(s, requirement{key: k, op: metav1.LabelSelectorOpIn, values: []string{v}})
	}
	for _, r := range ls.MatchExpressions {
		switch r.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(r.Values) == 0 {
				return nil, fmt.Errorf("selector on %q: operator %s needs values", r.Key, r.Operator)
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(r.Values) != 0 {
				return nil, fmt.Errorf("selector on %q: operator %s takes no values", r.Key, r.Operator)
			}
		default:
			return nil, fmt.Errorf("selector on %q: unknown operator %q", r.Key, r.Operator)
		}
		s = append(s, requirement{key: r.Key, op: r.Operator, values: r.Values})
	}
	return s, nil
}

func (s selector) matches(labels map[string]string) bool {
	for _, r := range s {
		v, ok := labels[r.key]
		switch r.op {
		case metav1.LabelSelectorOpIn:
			if !ok || !slices.Contains(r.values, v) {
				return false
			}
		case metav1.LabelSelectorOpNotIn:
			if ok && slices.Contains(r.values, v) {
				return false
			}
		case metav1.LabelSelectorOpExists:
			if !ok {
				return false
			}
		case metav1.LabelSelectorOpDoesNotExist:
			if ok {
				return false
			}
		}
	}
	return true
}
