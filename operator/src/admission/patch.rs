//! Building RFC 6902 patches that touch only what a webhook adds.
//!
//! The patches are applied by the API server to the object as *it* holds it, which may carry fields this
//! operator's types do not know. So instead of diffing a re-serialized object (which would replace whole
//! containers and drop such fields), each change is a targeted `add` or `remove`, with paths built from
//! escaped tokens (`dbward.dev/injected` becomes `dbward.dev~1injected`).

use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, jsonptr::PointerBuf};
use serde::Serialize;
use serde_json::Value;

/// A patch under construction.
#[derive(Debug, Default)]
pub(crate) struct PatchBuilder {
    ops: Vec<PatchOperation>,
}

impl PatchBuilder {
    /// Set the member at `path`, creating or replacing it. Its parent must exist.
    pub(crate) fn add(&mut self, path: &[&str], value: Value) {
        self.ops.push(PatchOperation::Add(AddOperation {
            path: pointer(path),
            value,
        }));
    }

    /// Remove the member at `path`, which must exist.
    pub(crate) fn remove(&mut self, path: &[&str]) {
        self.ops
            .push(PatchOperation::Remove(RemoveOperation { path: pointer(path) }));
    }

    /// Set `key` in the object at `map`, creating the object when the pod has none (`present` false):
    /// adding below a missing parent would fail the whole patch.
    pub(crate) fn add_to_map(&mut self, map: &[&str], present: bool, key: &str, value: Value) {
        if present {
            let mut path = map.to_vec();
            path.push(key);
            self.add(&path, value);
        } else {
            let mut object = serde_json::Map::new();
            object.insert(key.to_owned(), value);
            self.add(map, Value::Object(object));
        }
    }

    /// Put `items` after the `len` elements of the array at `array`. An empty or missing array is set as
    /// a whole (`add` replaces a `null` or `[]` member as well as creating a missing one).
    pub(crate) fn append(&mut self, array: &[&str], len: usize, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        if len == 0 {
            self.add(array, Value::Array(items));
            return;
        }
        let mut path = array.to_vec();
        path.push("-");
        for item in items {
            self.add(&path, item);
        }
    }

    /// Put `items`, in order, before the `len` elements of the array at `array`.
    pub(crate) fn prepend(&mut self, array: &[&str], len: usize, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        if len == 0 {
            self.add(array, Value::Array(items));
            return;
        }
        for (i, item) in items.into_iter().enumerate() {
            let index = i.to_string();
            let mut path = array.to_vec();
            path.push(&index);
            self.add(&path, item);
        }
    }

    /// The patch, or `None` when it would change nothing.
    pub(crate) fn finish(self) -> Option<Patch> {
        (!self.ops.is_empty()).then_some(Patch(self.ops))
    }
}

/// A JSON pointer from unescaped tokens.
fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

/// A Kubernetes API type as JSON.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Value {
    // k8s-openapi types have string keys and no fallible fields, so serializing them cannot fail.
    serde_json::to_value(value).expect("Kubernetes API types serialize to JSON")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn apply(doc: &mut Value, builder: PatchBuilder) {
        let patch = builder.finish().unwrap();
        json_patch::patch(doc, &patch).unwrap();
    }

    #[test]
    fn escapes_slash_and_tilde_in_keys() {
        let mut b = PatchBuilder::default();
        b.add_to_map(
            &["metadata", "annotations"],
            true,
            "dbward.dev/injected",
            json!("a"),
        );
        b.add_to_map(&["metadata", "annotations"], true, "x~y", json!("b"));
        let patch = b.finish().unwrap();
        let text = serde_json::to_string(&patch).unwrap();
        assert!(
            text.contains("/metadata/annotations/dbward.dev~1injected"),
            "{text}"
        );
        assert!(text.contains("/metadata/annotations/x~0y"), "{text}");
        let mut doc = json!({"metadata": {"annotations": {}}});
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"annotations": {"dbward.dev/injected": "a", "x~y": "b"}}})
        );
    }

    #[test]
    fn creates_a_missing_map() {
        let mut b = PatchBuilder::default();
        b.add_to_map(&["metadata", "annotations"], false, "k", json!("v"));
        let mut doc = json!({"metadata": {}});
        apply(&mut doc, b);
        assert_eq!(doc, json!({"metadata": {"annotations": {"k": "v"}}}));
    }

    #[test]
    fn appends_and_prepends_keeping_order() {
        let mut doc = json!({"a": [1, 2], "b": [3]});
        let mut b = PatchBuilder::default();
        b.append(&["a"], 2, vec![json!(8), json!(9)]);
        b.prepend(&["b"], 1, vec![json!(0), json!(1)]);
        apply(&mut doc, b);
        assert_eq!(doc, json!({"a": [1, 2, 8, 9], "b": [0, 1, 3]}));
    }

    #[test]
    fn missing_null_or_empty_arrays_are_set_whole() {
        for mut doc in [json!({}), json!({"a": null}), json!({"a": []})] {
            let mut b = PatchBuilder::default();
            b.prepend(&["a"], 0, vec![json!(1), json!(2)]);
            apply(&mut doc, b);
            assert_eq!(doc, json!({"a": [1, 2]}));
        }
    }

    #[test]
    fn nothing_to_do_is_no_patch() {
        let mut b = PatchBuilder::default();
        b.append(&["a"], 3, Vec::new());
        b.prepend(&["a"], 0, Vec::new());
        assert!(b.finish().is_none());
    }
}
