//! Small helpers over `roxmltree` for reading AWS's XML answers by local
//! element name (namespaces ignored).

use roxmltree::Node;

/// The first child element of `node` named `name`.
pub fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

/// The trimmed text of the child element `name`, if any.
pub fn text(node: Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name)
        .and_then(|n| n.text())
        .map(|t| t.trim().to_owned())
}

/// The text of the element at `path` (child names) under `node`.
pub fn text_at(node: Node<'_, '_>, path: &[&str]) -> Option<String> {
    let (last, parents) = path.split_last()?;
    let mut n = node;
    for p in parents {
        n = child(n, p)?;
    }
    text(n, last)
}

/// The `<item>` children of the child element `name` (AWS's lists).
pub fn items<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Vec<Node<'a, 'i>> {
    child(node, name)
        .map(|list| {
            list.children()
                .filter(|n| n.is_element() && n.tag_name().name() == "item")
                .collect()
        })
        .unwrap_or_default()
}

/// The elements named `name` anywhere under `node`.
pub fn descendants<'a, 'i>(
    node: Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    node.descendants()
        .filter(move |n| n.is_element() && n.tag_name().name() == name)
}

/// The `tagSet` of an EC2 resource as a map.
pub fn tags(node: Node<'_, '_>) -> std::collections::BTreeMap<String, String> {
    items(node, "tagSet")
        .into_iter()
        .filter_map(|t| Some((text(t, "key")?, text(t, "value").unwrap_or_default())))
        .collect()
}
