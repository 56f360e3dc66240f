//! An in-memory Merkle-Patricia trie with cached node hashes.
//!
//! Keys are 32-byte hashed keys (keccak of an address or a storage slot), so
//! every leaf sits 64 nibbles deep and branches never carry values. Nodes live
//! in an arena; each caches its `RlpNode`, and a write clears the caches only
//! on the path it walks. `root` therefore rehashes the paths changed since the
//! last call and nothing else: its cost grows with the keys changed, not with
//! the size of the trie.

use alloy_primitives::{B256, keccak256};
use alloy_trie::{
    EMPTY_ROOT_HASH, Nibbles, TrieMask,
    nodes::{BranchNodeRef, ExtensionNodeRef, LeafNodeRef, RlpNode},
};

type NodeId = u32;

/// Marks an empty branch slot.
const NONE: NodeId = NodeId::MAX;

#[derive(Clone, Debug)]
enum Node {
    Leaf { key: Nibbles, value: Vec<u8> },
    Extension { key: Nibbles, child: NodeId },
    Branch { children: [NodeId; 16] },
}

#[derive(Clone, Debug)]
struct Slot {
    node: Node,
    /// The node's reference as its parent embeds it; `None` when stale.
    hash: Option<RlpNode>,
}

/// A branch slot index (0..16) as the nibble it stands for.
fn nibble_of(index: usize) -> u8 {
    u8::try_from(index).expect("a branch has 16 slots")
}

/// A Merkle-Patricia trie over 32-byte keys.
#[derive(Clone, Default)]
pub struct MerkleTrie {
    slots: Vec<Slot>,
    free: Vec<NodeId>,
    root: Option<NodeId>,
    len: usize,
}

impl core::fmt::Debug for MerkleTrie {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let hashed = self.root.is_none_or(|root| self.slots[root as usize].hash.is_some());
        f.debug_struct("MerkleTrie").field("len", &self.len).field("root_hashed", &hashed).finish()
    }
}

impl MerkleTrie {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        let slot = Slot { node, hash: None };
        match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                let id = NodeId::try_from(self.slots.len()).expect("fewer than 2^32 trie nodes");
                assert!(id != NONE, "trie node arena exhausted");
                self.slots.push(slot);
                id
            }
        }
    }

    fn release(&mut self, id: NodeId) {
        self.slots[id as usize].node = Node::Branch { children: [NONE; 16] };
        self.slots[id as usize].hash = None;
        self.free.push(id);
    }

    fn set(&mut self, id: NodeId, node: Node) {
        let slot = &mut self.slots[id as usize];
        slot.node = node;
        slot.hash = None;
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &B256) -> Option<&[u8]> {
        let path = Nibbles::unpack(key);
        let mut depth = 0;
        let mut id = self.root?;
        loop {
            match &self.slots[id as usize].node {
                Node::Leaf { key, value } => {
                    return (path.slice(depth..) == *key).then_some(value.as_slice());
                }
                Node::Extension { key, child } => {
                    if !path.slice(depth..).starts_with(key) {
                        return None;
                    }
                    depth += key.len();
                    id = *child;
                }
                Node::Branch { children } => {
                    let child = children[usize::from(path.get_unchecked(depth))];
                    if child == NONE {
                        return None;
                    }
                    depth += 1;
                    id = child;
                }
            }
        }
    }

    /// Sets `key` to `value` (an RLP-encoded leaf value, non-empty).
    pub fn insert(&mut self, key: B256, value: Vec<u8>) {
        debug_assert!(!value.is_empty(), "an empty value is a removal");
        let root = self.root;
        self.root = Some(self.insert_at(root, Nibbles::unpack(key), value));
    }

    fn insert_at(&mut self, id: Option<NodeId>, path: Nibbles, value: Vec<u8>) -> NodeId {
        let Some(id) = id else {
            self.len += 1;
            return self.alloc(Node::Leaf { key: path, value });
        };
        // Taken out, not cloned: a leaf's value is moved, never copied.
        let node = std::mem::replace(&mut self.slots[id as usize].node, Node::Branch { children: [NONE; 16] });
        match node {
            Node::Leaf { key, .. } if key == path => {
                self.set(id, Node::Leaf { key, value });
                id
            }
            Node::Leaf { key, value: old_value } => {
                let common = key.common_prefix_length(&path);
                self.set(id, Node::Leaf { key: key.slice(common + 1..), value: old_value });
                let mut children = [NONE; 16];
                children[usize::from(key.get_unchecked(common))] = id;
                self.len += 1;
                children[usize::from(path.get_unchecked(common))] =
                    self.alloc(Node::Leaf { key: path.slice(common + 1..), value });
                self.wrap_in_extension(key.slice(..common), children)
            }
            Node::Extension { key, child } => {
                let common = key.common_prefix_length(&path);
                if common == key.len() {
                    let child = self.insert_at(Some(child), path.slice(common..), value);
                    self.set(id, Node::Extension { key, child });
                    return id;
                }
                // The new key leaves the extension at `common`: split it there.
                let mut children = [NONE; 16];
                let rest = key.slice(common + 1..);
                children[usize::from(key.get_unchecked(common))] = if rest.is_empty() {
                    self.release(id);
                    child
                } else {
                    self.set(id, Node::Extension { key: rest, child });
                    id
                };
                self.len += 1;
                children[usize::from(path.get_unchecked(common))] =
                    self.alloc(Node::Leaf { key: path.slice(common + 1..), value });
                self.wrap_in_extension(key.slice(..common), children)
            }
            Node::Branch { mut children } => {
                let nibble = usize::from(path.get_unchecked(0));
                let child = (children[nibble] != NONE).then_some(children[nibble]);
                children[nibble] = self.insert_at(child, path.slice(1..), value);
                self.set(id, Node::Branch { children });
                id
            }
        }
    }

    /// A new branch, behind an extension when `prefix` is not empty.
    fn wrap_in_extension(&mut self, prefix: Nibbles, children: [NodeId; 16]) -> NodeId {
        let branch = self.alloc(Node::Branch { children });
        if prefix.is_empty() { branch } else { self.alloc(Node::Extension { key: prefix, child: branch }) }
    }

    /// Removes `key`; nothing happens if it is absent.
    pub fn remove(&mut self, key: B256) {
        if let Some(root) = self.root
            && let Some(new_root) = self.remove_at(root, Nibbles::unpack(key))
        {
            self.root = new_root;
            self.len -= 1;
        }
    }

    /// `None` if `path` was absent (nothing changed); otherwise the node that
    /// now stands where `id` stood, `Some(None)` if nothing does.
    fn remove_at(&mut self, id: NodeId, path: Nibbles) -> Option<Option<NodeId>> {
        match &self.slots[id as usize].node {
            Node::Leaf { key, .. } => {
                if *key != path {
                    return None;
                }
                self.release(id);
                Some(None)
            }
            &Node::Extension { key, child } => {
                if !path.starts_with(&key) {
                    return None;
                }
                let new_child = self.remove_at(child, path.slice(key.len()..))?;
                let new_child = new_child.expect("a branch below an extension keeps at least one child");
                Some(Some(self.prefix_node(id, key, new_child)))
            }
            &Node::Branch { mut children } => {
                let nibble = usize::from(path.get_unchecked(0));
                if children[nibble] == NONE {
                    return None;
                }
                children[nibble] = self.remove_at(children[nibble], path.slice(1..))?.unwrap_or(NONE);
                let mut present = children.iter().enumerate().filter(|(_, c)| **c != NONE);
                let (only_nibble, &only_child) = present.next().expect("a branch had two children");
                if present.next().is_some() {
                    self.set(id, Node::Branch { children });
                    return Some(Some(id));
                }
                // One child left: the branch collapses into its child.
                let prefix = Nibbles::from_nibbles_unchecked([nibble_of(only_nibble)]);
                Some(Some(self.prefix_node(id, prefix, only_child)))
            }
        }
    }

    /// Puts `prefix` in front of `child`, reusing slot `id`: merges into a leaf
    /// or extension child, or becomes an extension over a branch child.
    fn prefix_node(&mut self, id: NodeId, prefix: Nibbles, child: NodeId) -> NodeId {
        let merged = match &mut self.slots[child as usize].node {
            Node::Leaf { key, value } => Some(Node::Leaf { key: prefix.join(key), value: std::mem::take(value) }),
            Node::Extension { key, child: grandchild } => {
                Some(Node::Extension { key: prefix.join(key), child: *grandchild })
            }
            Node::Branch { .. } => None,
        };
        match merged {
            Some(node) => {
                self.release(child);
                self.set(id, node);
            }
            None => self.set(id, Node::Extension { key: prefix, child }),
        }
        id
    }

    /// The root hash. Rehashes only nodes whose cache a write cleared.
    pub fn root(&mut self) -> B256 {
        let Some(root) = self.root else { return EMPTY_ROOT_HASH };
        let mut buf = Vec::with_capacity(544);
        let node = self.hash_node(root, &mut buf);
        // A short root node is embedded raw: the root is still its hash.
        node.as_hash().unwrap_or_else(|| keccak256(node.as_ref()))
    }

    fn hash_node(&mut self, id: NodeId, buf: &mut Vec<u8>) -> RlpNode {
        if let Some(hash) = &self.slots[id as usize].hash {
            return hash.clone();
        }
        let hash = match &self.slots[id as usize].node {
            Node::Leaf { key, value } => {
                buf.clear();
                LeafNodeRef::new(key, value).rlp(buf)
            }
            &Node::Extension { key, child } => {
                let child = self.hash_node(child, buf);
                buf.clear();
                ExtensionNodeRef::new(&key, &child).rlp(buf)
            }
            &Node::Branch { children } => {
                let mut stack = Vec::with_capacity(16);
                let mut mask = TrieMask::default();
                for (nibble, &child) in children.iter().enumerate() {
                    if child != NONE {
                        mask.set_bit(nibble_of(nibble));
                        stack.push(self.hash_node(child, buf));
                    }
                }
                debug_assert!(stack.len() >= 2, "a branch has at least two children");
                buf.clear();
                BranchNodeRef::new(&stack, mask).rlp(buf)
            }
        };
        self.slots[id as usize].hash = Some(hash.clone());
        hash
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use alloy_trie::HashBuilder;
    use proptest::prelude::*;

    use super::*;

    fn reference_root(map: &BTreeMap<B256, Vec<u8>>) -> B256 {
        let mut builder = HashBuilder::default();
        for (key, value) in map {
            builder.add_leaf(Nibbles::unpack(key), value);
        }
        builder.root()
    }

    /// Keys that share `shared` leading nibbles and differ after.
    fn key_with_prefix(shared: usize, tail: u8) -> B256 {
        let mut nibbles = vec![0xa; 64];
        nibbles[shared] = tail & 0xf;
        nibbles[63] = tail >> 4;
        B256::from_slice(&Nibbles::from_nibbles(&nibbles).pack())
    }

    #[test]
    fn empty_and_single_key() {
        let mut trie = MerkleTrie::new();
        assert_eq!(trie.root(), EMPTY_ROOT_HASH);
        let key = B256::repeat_byte(0x12);
        trie.insert(key, vec![0x01]);
        assert_eq!(trie.root(), reference_root(&BTreeMap::from([(key, vec![0x01])])));
        assert_eq!(trie.get(&key), Some(&[0x01][..]));
        trie.remove(key);
        assert_eq!(trie.root(), EMPTY_ROOT_HASH);
        assert!(trie.is_empty());
    }

    #[test]
    fn long_shared_prefixes_split_and_collapse_extensions() {
        let mut trie = MerkleTrie::new();
        let mut map = BTreeMap::new();
        for (i, shared) in (0u8..).zip([62usize, 60, 61, 3, 0, 62]) {
            let key = key_with_prefix(shared, i * 17 + 1);
            map.insert(key, vec![i + 1; 40]);
            trie.insert(key, vec![i + 1; 40]);
            assert_eq!(trie.root(), reference_root(&map), "after insert {i}");
        }
        let keys: Vec<B256> = map.keys().copied().collect();
        for key in keys {
            map.remove(&key);
            trie.remove(key);
            assert_eq!(trie.root(), reference_root(&map), "after removing {key}");
            assert_eq!(trie.len(), map.len());
        }
        assert_eq!(trie.root(), EMPTY_ROOT_HASH);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Set(u8, Vec<u8>),
        Remove(u8),
        Root,
    }

    /// A small key space so that updates and removals of present keys are
    /// common; keys are spread by hashing but some share long prefixes.
    fn key(k: u8) -> B256 {
        if k.is_multiple_of(4) { key_with_prefix(40 + usize::from(k % 23), k) } else { keccak256([k]) }
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 1..100)).prop_map(|(k, v)| Op::Set(k, v)),
            3 => any::<u8>().prop_map(Op::Remove),
            1 => Just(Op::Root),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn matches_a_trie_built_from_scratch(ops in proptest::collection::vec(op(), 1..300)) {
            let mut trie = MerkleTrie::new();
            let mut map = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Set(k, v) => {
                        map.insert(key(k), v.clone());
                        trie.insert(key(k), v);
                    }
                    Op::Remove(k) => {
                        map.remove(&key(k));
                        trie.remove(key(k));
                    }
                    Op::Root => prop_assert_eq!(trie.root(), reference_root(&map)),
                }
                prop_assert_eq!(trie.len(), map.len());
            }
            prop_assert_eq!(trie.root(), reference_root(&map));
            for (k, v) in &map {
                prop_assert_eq!(trie.get(k), Some(v.as_slice()));
            }
            let keys: Vec<B256> = map.keys().copied().collect();
            for k in keys {
                trie.remove(k);
            }
            prop_assert_eq!(trie.root(), EMPTY_ROOT_HASH);
            prop_assert!(trie.is_empty());
        }
    }
}
