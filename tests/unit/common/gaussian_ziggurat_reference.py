#!/usr/bin/env python3
"""Independent reference for tests/unit/common/gaussian_ziggurat_test.cc.

Re-implements, separately from the C++ code (Python integers for the 64-bit
arithmetic, one value at a time, no shared source), fedsim's RngStream key derivation (SplitMix64), xoshiro256**,
the ziggurat table recipe and RngStream::FillGaussian, and prints the values
the test pins: r, v, f[0], the tables' fingerprint, the first draws of
RngStream(42, kTest, 3, 7), two draws of its first 100,000 that came from
the tail algorithm, the hash of those 100,000 draws and the next 64-bit word.
Standard library only; Python's math calls the same C library (exp, log,
log1p, sqrt, erfc) as the C++ code.

  python3 tests/unit/common/gaussian_ziggurat_reference.py
"""
import math, struct
M=(1<<64)-1
def rotl(x,k): return ((x<<k)|(x>>(64-k)))&M
def mix64(x):
    x=(x+0x9e3779b97f4a7c15)&M
    x=((x^(x>>30))*0xbf58476d1ce4e5b9)&M
    x=((x^(x>>27))*0x94d049bb133111eb)&M
    return x^(x>>31)
class Stream:
    def __init__(s,seed,purpose,client,round_):
        h=mix64(seed&M)
        h=mix64(h^((purpose*0xd1342543de82ef95)&M))
        h=mix64(h^(client&M))
        h=mix64(h^rotl(round_&M,32))
        s.s=[]
        for _ in range(4):
            h=(h+0x9e3779b97f4a7c15)&M
            s.s.append(mix64(h))
    def next(s):
        s0,s1,s2,s3=s.s
        res=(rotl((s1*5)&M,7)*9)&M
        t=(s1<<17)&M
        s2^=s0; s3^=s1; s1^=s2; s0^=s3; s2^=t; s3=rotl(s3,45)
        s.s=[s0,s1,s2,s3]
        return res
    def uniform(s): return (s.next()>>11)*2.0**-53
def f(x): return math.exp(-0.5*x*x)
def area(r): return r*f(r)+math.sqrt(math.pi/2.0)*math.erfc(r/math.sqrt(2.0))
def closure(r,v,xs=None):
    xi=r
    if xs is not None: xs[255]=r
    for i in range(255,1,-1):
        y=v/xi+f(xi)
        if not y<1.0: return -1.0
        xi=math.sqrt(-2.0*math.log(y))
        if xs is not None: xs[i-1]=xi
    return xi*(1.0-f(xi))-v
lo,hi=3.0,4.0
while True:
    mid=lo+0.5*(hi-lo)
    if mid==lo or mid==hi: break
    if closure(mid,area(mid))<0.0: lo=mid
    else: hi=mid
r=lo; v=area(r); xs=[0.0]*256; assert closure(r,v,xs)<0; xs[0]=0.0
S=2.0**52
w=[0.0]*256; fi=[0.0]*256; k=[0]*256
for i in range(1,256): w[i]=xs[i]/S; fi[i]=f(xs[i])
w[0]=v/f(r)/S; fi[0]=v/xs[1]+fi[1]
for i in range(2,256): k[i]=int(S*(xs[i-1]/xs[i]))
k[1]=0; k[0]=int(S*(r*f(r)/v))
def bits(d): return struct.unpack('<Q',struct.pack('<d',d))[0]
def fingerprint():
    h=0
    for val in [bits(r),bits(v)]+k+[bits(x) for x in w]+[bits(x) for x in fi]:
        h=mix64(h^val)
    return h
def fill(st,n):
    out=[]
    for _ in range(n):
        while True:
            b=st.next(); idx=b&0xff; neg=(b>>8)&1; u=b>>12
            x=float(u)*w[idx]
            if u<k[idx]: z=x; break
            if idx==0:
                while True:
                    a=-math.log1p(-st.uniform())*(1.0/r)
                    bb=-math.log1p(-st.uniform())
                    if bb+bb>a*a: break
                z=r+a; break
            if fi[idx]+st.uniform()*(fi[idx-1]-fi[idx])<f(x): z=x; break
        out.append(-z if neg else z)
    return out
print("r", r.hex(), repr(r), "v", repr(v), "f0", repr(fi[0]))
print("fingerprint 0x%016x"%fingerprint())
st=Stream(42,100,3,7)
vals=fill(st,8)
for x in vals: print(repr(x))
# a value taking the tail: search
st=Stream(42,100,3,7); n=0
for i,x in enumerate(fill(st,20000)):
    if abs(x)>r: print("tail at", i, repr(x)); n+=1
    if n>=2: break
st=Stream(42,100,3,7)
vals=fill(st,100000)
h=0
for x in vals: h=mix64(h^bits(x))
print("hash100k 0x%016x"%h, "next u64 after: 0x%016x"%st.next())

