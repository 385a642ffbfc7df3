package session

// NewMemoryStoreOnClock gives the external tests a memory store on a fake
// clock, so that they can wrap it (to count or fail calls) and still move
// time with WithClock.
var NewMemoryStoreOnClock = newMemoryStore
